// The page's only way to the server: the public API, with the access token kept in memory and
// the refresh token in an HttpOnly cookie the page never sees (docs/api.md, "The refresh token
// in a cookie"). A 401 is answered by one refresh and one retry; if the login is gone, the
// page is told (onExpired) and shows the log-in form.

const COOKIE_HEADER = { "X-PolyGenix-Refresh-Cookie": "1" };

let access = null;
let refreshTimer = null;
let refreshing = null;
let expiredHandler = () => {};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message || body.detail)) || `The server answered ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function onExpired(handler) {
  expiredHandler = handler;
}

export function loggedIn() {
  return access !== null;
}

// Only whether this browser holds a login cookie, so that a visitor who never logged in is not
// sent a refresh bound to fail; the cookie itself is out of the page's reach.
const MARK = "polygenix.login";

export function mayHaveLogin() {
  return localStorage.getItem(MARK) === "1";
}

function keep(tokens) {
  access = tokens.access_token;
  localStorage.setItem(MARK, "1");
  clearTimeout(refreshTimer);
  // Refreshed before it expires, so a request rarely meets an expired token.
  const seconds = tokens.expires_in || 1800;
  const ahead = Math.max(seconds * 0.8, seconds - 60);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), ahead * 1000);
}

export function forget() {
  access = null;
  localStorage.removeItem(MARK);
  clearTimeout(refreshTimer);
}

async function readBody(response) {
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("application/json")) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }
  return null;
}

/** A new access token from the cookie; one request at a time whoever asks. */
export function refresh() {
  if (!refreshing) {
    refreshing = (async () => {
      const response = await fetch("/api/auth/refresh", {
        method: "POST",
        headers: COOKIE_HEADER,
        credentials: "same-origin",
      });
      const body = await readBody(response);
      if (!response.ok) {
        forget();
        throw new ApiError(response.status, body);
      }
      keep(body);
      return body;
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

export async function logIn(email, password) {
  const form = new URLSearchParams({ username: email, password });
  const response = await fetch("/api/auth/login", {
    method: "POST",
    headers: COOKIE_HEADER,
    body: form,
    credentials: "same-origin",
  });
  const body = await readBody(response);
  if (!response.ok) throw new ApiError(response.status, body);
  keep(body);
}

export async function signUp(name, email, password) {
  const response = await fetch("/api/auth/register", {
    method: "POST",
    headers: { ...COOKIE_HEADER, "Content-Type": "application/json" },
    body: JSON.stringify({ name, email, password }),
    credentials: "same-origin",
  });
  const body = await readBody(response);
  if (!response.ok) throw new ApiError(response.status, body);
  keep(body);
}

export async function logOut() {
  try {
    await call("/api/auth/logout", { method: "POST", headers: COOKIE_HEADER, json: {} });
  } finally {
    forget();
  }
}

/**
 * fetch() for the API: the bearer token added, JSON sent with `json`, one refresh and retry on
 * a 401. Resolves to the Response when it is a success (or a 304), throws ApiError otherwise.
 */
export async function request(path, options = {}) {
  const send = () => {
    const headers = { ...(options.headers || {}) };
    if (access) headers.Authorization = `Bearer ${access}`;
    let body = options.body;
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    return fetch(path, {
      method: options.method || "GET",
      headers,
      body,
      signal: options.signal,
      credentials: "same-origin",
    });
  };
  let response = await send();
  if (response.status === 401) {
    try {
      await refresh();
    } catch (error) {
      if (error instanceof ApiError) {
        expiredHandler();
        throw new ApiError(401, { message: "Your login has expired: log in again." });
      }
      throw error;
    }
    response = await send();
  }
  if (!response.ok && response.status !== 304) {
    throw new ApiError(response.status, await readBody(response));
  }
  return response;
}

/** A JSON API call: the decoded body (null for a 304). */
export async function call(path, options = {}) {
  const response = await request(path, options);
  if (response.status === 304) return null;
  return readBody(response);
}

/** A JSON list and its X-Pagination header. */
export async function page(path) {
  const response = await request(path);
  let pagination = {};
  try {
    pagination = JSON.parse(response.headers.get("X-Pagination") || "{}");
  } catch {
    pagination = {};
  }
  return { items: await readBody(response), pagination };
}

/**
 * A streamed turn (Server-Sent Events): `handlers[event](data)` for each event as it arrives.
 * A failure before the stream begins is thrown as ApiError; the stream's own `error` event is
 * handed over like the others.
 */
export async function stream(path, json, handlers, signal) {
  const response = await request(path, {
    method: json.method || "POST",
    json: json.body,
    headers: { Accept: "text/event-stream" },
    signal,
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      dispatch(block, handlers);
    }
  }
}

function dispatch(block, handlers) {
  let event = "message";
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith(":")) continue; // keep-alive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    if (field === "data") data.push(value);
  }
  if (!data.length || !handlers[event]) return;
  let parsed;
  try {
    parsed = JSON.parse(data.join("\n"));
  } catch {
    return;
  }
  handlers[event](parsed);
}

/** Download an authenticated file (an export) under the name the server gives. */
export async function download(path) {
  const response = await request(path);
  const disposition = response.headers.get("Content-Disposition") || "";
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || "polygenix-export";
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return name;
}
