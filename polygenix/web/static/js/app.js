// The page's start: log in or sign up (or carry on a login through its cookie), then the views:
// #/ a new chat, #/chat/N (#/chat/N/m/M: at message M), #/settings, #/usage.
import * as api from "./api.js";

// The chat's modules (and the Markdown and sanitising libraries under them) load while the
// log-in form is already usable: the form needs none of them.
let chat = null;
let sidebar = null;
let loading = null;

function loadApp() {
  loading ||= Promise.all([import("./chat.js"), import("./sidebar.js")]).then(([c, s]) => {
    chat = c;
    sidebar = s;
    chat.init();
    sidebar.init();
  });
  return loading;
}

const $ = (id) => document.getElementById(id);
const channel = "BroadcastChannel" in window ? new BroadcastChannel("polygenix-auth") : null;
let user = null;
let mode = "login";
let lastWords = [];

// --- logging in ----------------------------------------------------------------------------

function setMode(next) {
  mode = next;
  const signUp = mode === "signup";
  $("auth-title").textContent = signUp ? "Sign up" : "Log in";
  $("auth-submit").textContent = signUp ? "Sign up" : "Log in";
  $("auth-switch").textContent = signUp ? "I already have an account" : "Create an account";
  $("name-field").hidden = !signUp;
  $("auth-password").autocomplete = signUp ? "new-password" : "current-password";
  $("auth-error").hidden = true;
}

function showAuth(noticeText = "") {
  document.body.dataset.view = "auth";
  $("app-view").hidden = true;
  $("auth-view").hidden = false;
  $("auth-notice").textContent = noticeText;
  $("auth-notice").hidden = !noticeText;
  document.title = "Log in · PolyGenix";
  ($("auth-email").value ? $("auth-password") : $("auth-email")).focus();
}

async function submitAuth(event) {
  event.preventDefault();
  const email = $("auth-email").value.trim();
  const password = $("auth-password").value;
  const error = $("auth-error");
  error.hidden = true;
  $("auth-submit").disabled = true;
  try {
    if (mode === "signup") await api.signUp($("auth-name").value.trim(), email, password);
    else await api.logIn(email, password);
    $("auth-password").value = "";
    await enter();
  } catch (failure) {
    const fields = failure.body?.errors?.json || failure.body?.errors?.form;
    error.textContent = fields
      ? Object.entries(fields).map(([name, problems]) => `${name}: ${[].concat(problems).join(" ")}`).join(" ")
      : failure.message;
    error.hidden = false;
  } finally {
    $("auth-submit").disabled = false;
  }
}

/** Logged in: show the app, where it was if this is the same person coming back. */
async function enter() {
  const [me] = await Promise.all([api.call("/api/auth/me"), loadApp()]);
  const same = user && user.id === me.id;
  user = me;
  $("who").textContent = me.name;
  $("auth-view").hidden = true;
  $("app-view").hidden = false;
  $("auth-notice").hidden = true;
  channel?.postMessage({ type: "login" });
  if (!same) {
    chat.reset();
    sidebar.clear();
  }
  await Promise.all([chat.loadModels(), sidebar.load(true)]);
  if (same) $("message").focus();
  else await route();
  document.body.dataset.view = "app";
}

function expired() {
  if ($("app-view").hidden) return;
  $("auth-email").value = user?.email || $("auth-email").value;
  setMode("login");
  showAuth("Your login has expired. Log in again: what you typed is kept.");
}

async function logOut() {
  try {
    await api.logOut();
  } catch {
    // Logged out here whatever the server said: the token is gone from memory.
  }
  channel?.postMessage({ type: "logout" });
  leave();
}

function leave() {
  api.forget();
  user = null;
  chat?.reset();
  sidebar?.clear();
  setMode("login");
  $("auth-password").value = "";
  showAuth("");
}

// --- views ---------------------------------------------------------------------------------

function show(view) {
  for (const id of ["chat-view", "settings-view", "usage-view"]) $(id).hidden = id !== view;
}

async function route() {
  if (!user) return;
  const hash = location.hash.replace(/^#/, "") || "/";
  try {
    let match;
    if (hash === "/settings") {
      show("settings-view");
      await import("./pages.js").then((pages) => pages.showSettings(user, async (password) => {
        await api.logIn(user.email, password);
      }));
      $("settings-title").focus();
    } else if (hash === "/usage") {
      show("usage-view");
      await import("./pages.js").then((pages) => pages.showUsage(user));
      $("usage-title").focus();
    } else if ((match = hash.match(/^\/chat\/(\d+)(?:\/m\/(\d+))?$/))) {
      show("chat-view");
      await chat.open(Number(match[1]), match[2] ? Number(match[2]) : null, lastWords);
      lastWords = [];
    } else {
      show("chat-view");
      chat.newChat();
    }
  } catch (error) {
    if (error.status !== 401) {
      $("status").textContent = error.message;
      console.warn(error);
    }
  }
}

// --- start ---------------------------------------------------------------------------------

async function start() {
  setMode("login");
  $("auth-form").addEventListener("submit", submitAuth);
  $("auth-switch").addEventListener("click", () => setMode(mode === "login" ? "signup" : "login"));
  $("logout").addEventListener("click", logOut);
  $("new-chat").addEventListener("click", () => {
    if (location.hash === "#/" || location.hash === "") chat.newChat();
    else location.hash = "#/";
  });
  $("search-list").addEventListener("click", (event) => {
    const link = event.target.closest("a");
    if (link) lastWords = [...link.querySelectorAll("mark")].map((m) => m.textContent);
  });
  window.addEventListener("hashchange", route);
  $("chat-list").addEventListener("click", (event) => {
    // The open chat's own link opens it again (no hash change): it may have changed elsewhere.
    if (event.target.closest("a")?.hash === location.hash) route();
  });
  window.addEventListener("focus", () => {
    if (user) {
      chat.recheck();
      sidebar.load(true).catch(() => {});
    }
  });
  channel?.addEventListener("message", (event) => {
    if (event.data?.type === "logout" && user) leave();
  });
  api.onExpired(expired);
  if (api.mayHaveLogin()) {
    try {
      await Promise.all([api.refresh(), loadApp()]);
      await enter();
    } catch {
      showAuth("");
    }
  } else {
    showAuth("");
    loadApp();
  }
  document.body.dataset.ready = "true";
}

start();
