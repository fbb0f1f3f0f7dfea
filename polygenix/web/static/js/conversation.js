// The open conversation's state and its message list: each message drawn as an item (who, when,
// reasoning, problems, its Edit/Regenerate/Retry buttons), a window at a time, older ones as
// you scroll up; the status line, the notice and the title.
import * as attachments from "./attachments.js";
import { el, renderMarkdown, when } from "./render.js";

const WINDOW = 60;
export const $ = (id) => document.getElementById(id);
export const messagesList = $("messages");
export const conversation = $("conversation");
const older = $("older");
export const box = $("message");
export const modelSelect = $("model");
const sendButton = $("send");
export const stopButton = $("stop");
const title = $("chat-title");
const notice = $("chat-notice");

export const state = {
  chat: null, // the open session (ChatSessionResponse), null for a new chat
  messages: [],
  shownFrom: 0,
  controller: null,
  models: [],
  drafts: new Map(),
  failure: null, // {content, stored}: a turn that failed, for its Retry
};

export const say = (text) => {
  $("status").textContent = text;
};

export function showNotice(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

export function setTitle(text) {
  title.textContent = text;
  document.title = `${text} · PolyGenix`;
}

export function busy(on) {
  stopButton.hidden = !on;
  sendButton.disabled = on;
  if (on) say("The reply is being written");
}

// --- rendering -----------------------------------------------------------------------------

function body(message) {
  const node = el("div", { class: "body" });
  if (message.is_bot) node.append(renderMarkdown(message.content));
  else node.textContent = message.content;
  return node;
}

function messageItem(message, index) {
  const last = index === state.messages.length - 1;
  const who = message.is_bot ? message.model || "Assistant" : "You";
  const item = el("li", {
    class: `msg ${message.is_bot ? "bot" : "user"}${message.failed ? " failed" : ""}`,
    id: message.id ? `m-${message.id}` : undefined,
    "data-index": index,
    tabindex: "-1",
  });
  item.append(
    el("p", { class: "meta" }, el("strong", { text: who }), " ", el("span", { class: "muted", text: when(message.timestamp) })),
    body(message),
  );
  if (message.attachments?.length) item.append(attachments.thumbnails(message.attachments));
  if (message.reasoning) {
    item.querySelector(".meta").after(
      el("details", { class: "reasoning" }, el("summary", { text: "Reasoning" }), el("p", { text: message.reasoning })),
    );
  }
  const problem = message.stopped
    ? "Stopped: the reply so far is kept."
    : message.error && (message.incomplete ? `Cut short: ${message.error}` : `Failed: ${message.error}`);
  if (problem) item.append(el("p", { class: message.stopped ? "muted" : "error", text: problem }));
  const actions = el("div", { class: "actions" });
  if (!message.is_bot && message.id && !message.pending) {
    actions.append(el("button", { type: "button", "data-action": "edit", text: "Edit" }));
  }
  if (last && !message.pending && !state.controller) {
    if (message.is_bot) actions.append(el("button", { type: "button", "data-action": "regenerate", text: "Regenerate" }));
    else if (message.failed || message.unsent) actions.append(el("button", { type: "button", "data-action": "retry", text: "Retry" }));
  }
  if (actions.childElementCount) item.append(actions);
  return item;
}

export function renderAll(focusIndex = null) {
  const n = state.messages.length;
  state.shownFrom = focusIndex === null ? Math.max(0, n - WINDOW) : Math.max(0, Math.min(focusIndex - 10, n - WINDOW));
  messagesList.replaceChildren(...state.messages.slice(state.shownFrom).map((m, i) => messageItem(m, state.shownFrom + i)));
  older.hidden = state.shownFrom === 0;
  older.textContent = `${state.shownFrom} earlier messages: scroll up to see them`;
  $("empty").hidden = n > 0;
}

export function renderOlder() {
  if (state.shownFrom === 0) return;
  const from = Math.max(0, state.shownFrom - WINDOW);
  const height = conversation.scrollHeight;
  const items = state.messages.slice(from, state.shownFrom).map((m, i) => messageItem(m, from + i));
  messagesList.prepend(...items);
  state.shownFrom = from;
  conversation.scrollTop += conversation.scrollHeight - height;
  older.hidden = from === 0;
  older.textContent = `${from} earlier messages: scroll up to see them`;
}

export function rerender(index) {
  const node = messagesList.querySelector(`[data-index="${index}"]`);
  if (node) node.replaceWith(messageItem(state.messages[index], index));
}

export function rerenderTail() {
  // The last two carry the Regenerate/Retry buttons, which move as messages come and go.
  for (let i = Math.max(state.shownFrom, state.messages.length - 3); i < state.messages.length; i++) rerender(i);
}

export function append(message) {
  state.messages.push(message);
  const index = state.messages.length - 1;
  messagesList.append(messageItem(message, index));
  $("empty").hidden = true;
  rerenderTail();
  return index;
}

export function scrollToEnd() {
  conversation.scrollTop = conversation.scrollHeight;
}
