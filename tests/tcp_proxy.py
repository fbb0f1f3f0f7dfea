"""A TCP proxy on 127.0.0.1 for outages of the database or Redis: it passes bytes through until
told to refuse new connections, reset every connection, or go silent (a black hole that accepts
and reads but never answers or forwards, as a dropped firewall state does)."""

import contextlib
import select
import socket
import struct
import threading

PASS, REFUSE, RESET, SILENT = "pass", "refuse", "reset", "silent"


class TCPProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.mode = PASS
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def set(self, mode: str) -> None:
        """PASS, REFUSE (new connections are reset at once), RESET (every open connection is
        reset now, and new ones at once), SILENT (nothing is forwarded either way)."""
        with self._lock:
            self.mode = mode
            pairs = list(self._pairs) if mode == RESET else []
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self.mode
            if mode in (REFUSE, RESET):
                _reset(client)
                continue
            if mode == SILENT:
                with self._lock:
                    self._pairs.append((client, None))
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _swallow(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while client.recv(65536):
                pass

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        sockets = [client, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 0.2)
                with self._lock:
                    silent = self.mode == SILENT
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if not silent:
                        (upstream if sock is client else client).sendall(data)
        except (OSError, ValueError):
            # ValueError: set(RESET) closed the sockets from another thread, and select() was
            # handed a closed socket (fd -1).
            return
        finally:
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()


def _reset(sock: socket.socket | None) -> None:
    """Close with an RST rather than a FIN (SO_LINGER with a zero timeout)."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
