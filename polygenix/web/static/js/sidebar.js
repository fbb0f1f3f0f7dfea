// The sidebar: the caller's chats in activity order (more pages load as it scrolls) and the
// search across all of them.
import * as api from "./api.js";
import { el, renderSnippet } from "./render.js";

const PAGE_SIZE = 30;
const list = document.getElementById("chat-list");
const more = document.getElementById("chats-more");
const nav = document.getElementById("chats");
const search = document.getElementById("search");
const results = document.getElementById("search-results");
const resultList = document.getElementById("search-list");
const summary = document.getElementById("search-summary");

const state = { chats: new Map(), pages: 0, totalPages: 1, loading: null, current: null };

export function known(chatId) {
  return state.chats.get(chatId);
}

export function firstChat() {
  return list.querySelector("a")?.dataset.chat;
}

function item(chat) {
  const link = el("a", { href: `#/chat/${chat.chat_id}`, "data-chat": chat.chat_id, text: chat.title });
  if (chat.chat_id === state.current) link.setAttribute("aria-current", "page");
  return el("li", {}, link);
}

/** Load the next page of chats (or, with `reset`, as many pages again from the first). */
export async function load(reset = false) {
  if (state.loading) return state.loading;
  state.loading = (async () => {
    const pages = reset ? Math.max(state.pages, 1) : state.pages + 1;
    const from = reset ? 1 : pages;
    if (!reset && pages > state.totalPages) return;
    const fresh = [];
    let totalPages = state.totalPages;
    for (let page = from; page <= pages; page++) {
      const { items, pagination } = await api.page(
        `/api/ai_chat/sessions?page=${page}&page_size=${PAGE_SIZE}`,
      );
      fresh.push(...items);
      totalPages = pagination.total_pages ?? 1;
      if (page >= totalPages) break;
    }
    if (reset) {
      state.chats.clear();
      list.replaceChildren();
    }
    for (const chat of fresh) {
      if (state.chats.has(chat.chat_id)) continue;
      state.chats.set(chat.chat_id, chat);
      list.append(item(chat));
    }
    state.pages = reset ? Math.min(pages, totalPages) : pages;
    state.totalPages = totalPages;
    more.textContent = state.pages < totalPages ? "Loading more chats…" : "";
  })().finally(() => {
    state.loading = null;
  });
  return state.loading;
}

/** A chat with new activity goes to the top (or appears there). */
export function touch(chat) {
  const previous = state.chats.get(chat.chat_id);
  state.chats.set(chat.chat_id, { ...(previous || {}), ...chat });
  list.querySelector(`a[data-chat="${chat.chat_id}"]`)?.parentElement.remove();
  list.prepend(item(state.chats.get(chat.chat_id)));
}

export function rename(chatId, title) {
  const chat = state.chats.get(chatId);
  if (chat) chat.title = title;
  const link = list.querySelector(`a[data-chat="${chatId}"]`);
  if (link) link.textContent = title;
}

export function remove(chatId) {
  state.chats.delete(chatId);
  list.querySelector(`a[data-chat="${chatId}"]`)?.parentElement.remove();
}

export function select(chatId) {
  state.current = chatId;
  for (const link of list.querySelectorAll("a")) {
    if (Number(link.dataset.chat) === chatId) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

export function clear() {
  state.chats.clear();
  state.pages = 0;
  state.totalPages = 1;
  list.replaceChildren();
  search.value = "";
  results.hidden = true;
  resultList.replaceChildren();
}

let searchTimer = null;
let searchSeq = 0;

async function runSearch() {
  const q = search.value.trim();
  const seq = ++searchSeq;
  if (!q) {
    results.hidden = true;
    resultList.replaceChildren();
    return;
  }
  results.hidden = false;
  summary.textContent = "Searching…";
  try {
    const { items, pagination } = await api.page(
      `/api/ai_chat/search?q=${encodeURIComponent(q)}&page_size=20`,
    );
    if (seq !== searchSeq) return;
    resultList.replaceChildren(
      ...items.map((hit) => {
        const target = hit.message_id ? `#/chat/${hit.chat_id}/m/${hit.message_id}` : `#/chat/${hit.chat_id}`;
        return el(
          "li",
          {},
          el(
            "a",
            { href: target, class: "result" },
            el("span", { class: "result-title", text: hit.title }),
            el("span", { class: "snippet" }, renderSnippet(hit.snippet)),
          ),
        );
      }),
    );
    const total = pagination.total ?? items.length;
    summary.textContent = total
      ? `${total} match${total === 1 ? "" : "es"}${total > items.length ? ` (the best ${items.length} shown)` : ""}`
      : "No matches";
  } catch (error) {
    if (seq !== searchSeq) return;
    resultList.replaceChildren();
    summary.textContent = error.status === 422 ? "Type a word to search for." : error.message;
  }
}

export function init() {
  const observer = new IntersectionObserver(
    (entries) => {
      if (entries.some((e) => e.isIntersecting) && state.pages < state.totalPages && api.loggedIn()) {
        load().catch(() => {});
      }
    },
    { root: nav.parentElement, rootMargin: "200px" },
  );
  observer.observe(more);
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 250);
  });
  search.form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(searchTimer);
    runSearch();
  });
  search.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      search.value = "";
      runSearch();
    }
  });
}
