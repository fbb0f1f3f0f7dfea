"""HTTP to one provider: a `requests.Session` for its connection pool, and nothing else of it.

Each request is prepared on its own and sent through the session's pool, rather than with
`session.post`, which merges in session-level settings (cookies, auth, proxies, CA bundle from
the environment) on every call: that merge cost as much again as preparing the request, and
session state is exactly what must not pass from one user's call to the next. What requests
would read from the environment per call (HTTP(S)_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE) is read
once, for the provider's base URL, when the transport is made: a server's environment does not
change. Redirects are never followed (one could carry the key's request elsewhere), and the
cookie jar accepts nothing.
"""

import contextlib
import http.cookiejar
import os
import socket

import requests

from .base import ProviderError
from .jsonbody import Body

USER_AGENT = "PolyGenix/0.1"
# What a requests.Session would add (Accept, Accept-Encoding...), with our own User-Agent.
BASE_HEADERS = {**requests.utils.default_headers(), "User-Agent": USER_AGENT}
JSON_TYPE = {"Content-Type": "application/json"}


class Transport:
    def __init__(self, name: str, base_url: str | None):
        self.name = name
        self.session = requests.Session()
        self.session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self.proxies = requests.utils.get_environ_proxies(base_url) if base_url else {}
        self.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )

    def get(self, url: str, headers: dict[str, str], *, timeout: float) -> requests.Response:
        """GET `url`, the body left for the caller; failures raised as ProviderError."""
        prepared = requests.Request("GET", url, headers={**BASE_HEADERS, **headers}).prepare()
        return self._send(prepared, timeout, timeout)

    def post(
        self,
        url: str,
        headers: dict[str, str],
        body: "bytes | Body",
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> requests.Response:
        """POST `body`, JSON (jsonbody.encode), and return once the headers are in (the body is
        the caller's to read); transport failures raised as ProviderError, retryable where worth
        it."""
        prepared = requests.Request(
            "POST", url, headers={**BASE_HEADERS, **JSON_TYPE, **headers}, data=body
        ).prepare()
        return self._send(prepared, connect_timeout, read_timeout)

    def _send(self, prepared, connect_timeout: float, read_timeout: float) -> requests.Response:
        try:
            return self.session.send(
                prepared,
                proxies=self.proxies,
                verify=self.verify,
                timeout=(connect_timeout, read_timeout),
                stream=True,
                allow_redirects=False,
            )
        except requests.ConnectTimeout:
            raise self.unreachable() from None
        except requests.Timeout:
            # No first byte in time: retried like a 5xx while the call's deadline allows.
            raise ProviderError(
                f"{self.name} did not answer in time", status=504, retryable=True
            ) from None
        except requests.ConnectionError:
            raise self.unreachable() from None
        except requests.RequestException:
            raise self.cut_short() from None

    def unreachable(self) -> ProviderError:
        return ProviderError(f"{self.name} could not be reached", status=503, retryable=True)

    def cut_short(self) -> ProviderError:
        return ProviderError(
            f"{self.name} stopped answering in the middle of its reply", retryable=True
        )


def hang_up(response: requests.Response) -> None:
    """Stop reading `response` now, from any thread: shutting the socket wakes a read blocked
    in another thread (close() alone would leave the connection open until its next chunk)."""
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    response.close()
