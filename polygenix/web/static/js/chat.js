// One conversation: its messages (rendered a window at a time, older ones as you scroll up),
// the message box, streamed replies, Stop, Regenerate, Edit, retries, and the chat's own
// actions (rename, instructions and default model, export, delete).
import * as api from "./api.js";
import * as attachments from "./attachments.js";
import { el, renderMarkdown, when } from "./render.js";
import * as sidebar from "./sidebar.js";

const WINDOW = 60;
const $ = (id) => document.getElementById(id);
const messagesList = $("messages");
const conversation = $("conversation");
const older = $("older");
const box = $("message");
const modelSelect = $("model");
const sendButton = $("send");
const stopButton = $("stop");
const title = $("chat-title");
const notice = $("chat-notice");
const channel = "BroadcastChannel" in window ? new BroadcastChannel("polygenix") : null;

const state = {
  chat: null, // the open session (ChatSessionResponse), null for a new chat
  messages: [],
  shownFrom: 0,
  controller: null,
  models: [],
  drafts: new Map(),
  failure: null, // {content, stored}: a turn that failed, for its Retry
};

const say = (text) => {
  $("status").textContent = text;
};

function showNotice(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

// --- models --------------------------------------------------------------------------------

let modelsLoaded = null;

export function loadModels() {
  modelsLoaded = fetchModels();
  return modelsLoaded;
}

async function fetchModels() {
  state.models = await api.call("/api/ai_chat/models");
  const options = (select, withNone) => {
    select.replaceChildren();
    if (withNone) select.append(el("option", { value: "", text: "None (choose each time)" }));
    for (const model of state.models) {
      const label = model.available ? model.id : `${model.id} (unavailable: ${model.unavailable_reason || "not configured"})`;
      select.append(el("option", { value: model.id, text: label, disabled: !model.available }));
    }
  };
  options(modelSelect, false);
  options($("session-model"), true);
  pickModel();
}

function pickModel() {
  const usable = state.models.filter((m) => m.available).map((m) => m.id);
  const wanted = [state.chat?.model, localStorage.getItem("polygenix.model")];
  const choice = wanted.find((m) => m && usable.includes(m)) || usable[0];
  if (choice) modelSelect.value = choice;
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

function renderAll(focusIndex = null) {
  const n = state.messages.length;
  state.shownFrom = focusIndex === null ? Math.max(0, n - WINDOW) : Math.max(0, Math.min(focusIndex - 10, n - WINDOW));
  messagesList.replaceChildren(...state.messages.slice(state.shownFrom).map((m, i) => messageItem(m, state.shownFrom + i)));
  older.hidden = state.shownFrom === 0;
  older.textContent = `${state.shownFrom} earlier messages: scroll up to see them`;
  $("empty").hidden = n > 0;
}

function renderOlder() {
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

function rerender(index) {
  const node = messagesList.querySelector(`[data-index="${index}"]`);
  if (node) node.replaceWith(messageItem(state.messages[index], index));
}

function rerenderTail() {
  // The last two carry the Regenerate/Retry buttons, which move as messages come and go.
  for (let i = Math.max(state.shownFrom, state.messages.length - 3); i < state.messages.length; i++) rerender(i);
}

function append(message) {
  state.messages.push(message);
  const index = state.messages.length - 1;
  messagesList.append(messageItem(message, index));
  $("empty").hidden = true;
  rerenderTail();
  return index;
}

function scrollToEnd() {
  conversation.scrollTop = conversation.scrollHeight;
}

function highlight(node, words) {
  if (!words.length) return;
  const pattern = new RegExp(words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "gi");
  const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode);
  for (const text of texts) {
    const parts = text.data.split(new RegExp(`(${pattern.source})`, "gi"));
    if (parts.length === 1) continue;
    text.replaceWith(...parts.map((part, i) => (i % 2 ? el("mark", { text: part }) : part)));
  }
}

// --- opening a chat ------------------------------------------------------------------------

function setTitle(text) {
  title.textContent = text;
  document.title = `${text} · PolyGenix`;
}

function saveDraft() {
  state.drafts.set(state.chat ? state.chat.chat_id : "new", box.value);
}

function restoreDraft() {
  box.value = state.drafts.get(state.chat ? state.chat.chat_id : "new") || "";
}

const WAIT = "A reply is being written: press Stop, or wait for it, before leaving this chat.";

export function newChat() {
  if (state.controller) return showNotice(WAIT);
  saveDraft();
  state.chat = null;
  state.messages = [];
  state.failure = null;
  setTitle("New chat");
  $("chat-actions").hidden = true;
  closePanels();
  showNotice("");
  renderAll();
  restoreDraft();
  pickModel();
  sidebar.select(null);
  box.focus();
}

/** Open a chat, at one of its messages when `messageId` is given (a search hit). */
export async function open(chatId, messageId = null, words = []) {
  if (state.controller) return showNotice(WAIT);
  saveDraft();
  let chat;
  try {
    chat = await api.call(`/api/ai_chat/${chatId}`);
  } catch (error) {
    if (error.status === 404) {
      sidebar.remove(chatId);
      newChat();
      showNotice("That chat no longer exists: it was deleted, perhaps in another tab or window.");
      return;
    }
    throw error;
  }
  state.chat = chat;
  state.messages = chat.messages;
  state.failure = null;
  setTitle(chat.title);
  $("chat-actions").hidden = false;
  closePanels();
  showNotice("");
  sidebar.select(chat.chat_id);
  const at = messageId ? state.messages.findIndex((m) => m.id === messageId) : -1;
  renderAll(at >= 0 ? at : null);
  restoreDraft();
  pickModel();
  if (at >= 0) {
    const node = document.getElementById(`m-${messageId}`);
    node.classList.add("hit");
    highlight(node.querySelector(".body"), words);
    node.scrollIntoView({ block: "center" });
    node.focus({ preventScroll: true });
  } else {
    scrollToEnd();
  }
}

export function current() {
  return state.chat;
}

/** The chat was deleted elsewhere (another tab): leave it. */
export function gone(chatId) {
  sidebar.remove(chatId);
  if (state.chat && state.chat.chat_id === chatId) {
    if (state.controller) {
      state.controller.abort();
      state.controller = null;
      busy(false);
    }
    newChat();
    showNotice("This chat was deleted in another tab or window.");
  }
}

export async function recheck() {
  if (!state.chat || state.controller) return;
  try {
    await api.request(`/api/ai_chat/${state.chat.chat_id}`);
  } catch (error) {
    if (error.status === 404) gone(state.chat.chat_id);
  }
}

// --- turns ---------------------------------------------------------------------------------

function busy(on) {
  stopButton.hidden = !on;
  sendButton.disabled = on;
  if (on) say("The reply is being written");
}

/** Run one streamed turn; the reply is written into `state.messages[replyIndex]`. */
async function runTurn(path, method, payload, replyIndex, userIndex) {
  const controller = new AbortController();
  state.controller = controller;
  busy(true);
  const reply = state.messages[replyIndex];
  let frame = null;
  const paint = () => {
    frame = null;
    const node = messagesList.querySelector(`[data-index="${replyIndex}"] .body`);
    if (node) node.replaceChildren(renderMarkdown(reply.content));
    const nearEnd = conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 120;
    if (nearEnd) scrollToEnd();
  };
  try {
    await api.stream(
      path,
      { method, body: payload },
      {
        start: (data) => {
          const user = state.messages[userIndex];
          user.id = data.user_message_id;
          user.pending = false;
          reply.model = data.model;
          if (!state.chat) {
            state.chat = { chat_id: data.session_id, title: user.content.replace(/\s+/g, " ").trim().slice(0, 60), model: null, system_prompt: null };
            setTitle(state.chat.title);
            $("chat-actions").hidden = false;
            history.replaceState(null, "", `#/chat/${data.session_id}`);
            state.drafts.delete("new");
          }
          sidebar.touch({ chat_id: state.chat.chat_id, title: state.chat.title });
          sidebar.select(state.chat.chat_id);
          rerender(userIndex);
        },
        delta: (data) => {
          reply.content += data.content;
          if (!frame) frame = requestAnimationFrame(paint);
        },
        reasoning: (data) => {
          reply.reasoning = (reply.reasoning || "") + data.content;
        },
        done: (data) => {
          Object.assign(reply, data, { pending: false });
        },
        error: (data) => {
          Object.assign(reply, { pending: false, failed: true, incomplete: true, error: data.message });
          if (!reply.content) reply.error = data.message;
        },
      },
      controller.signal,
    );
    if (reply.pending) Object.assign(reply, { pending: false, failed: true, incomplete: true, error: "The connection ended before the reply was complete" });
    say("The reply is complete");
    return true;
  } catch (error) {
    if (error.name === "AbortError") {
      Object.assign(reply, { pending: false, stopped: true, incomplete: true });
      say("Stopped");
      return true;
    }
    throw error;
  } finally {
    if (frame) cancelAnimationFrame(frame);
    state.controller = null;
    busy(false);
    if (state.messages[replyIndex] === reply) {
      if (!reply.content && (reply.stopped || reply.failed)) {
        // No text at all: the server flagged the question instead; show it there.
        state.messages.splice(replyIndex, 1);
        const user = state.messages[userIndex];
        if (user) Object.assign(user, { failed: true, error: reply.stopped ? "Stopped before any reply" : reply.error });
        renderAll();
      } else {
        rerender(replyIndex);
        rerenderTail();
      }
    }
  }
}

function failTurn(error, userIndex, content) {
  const user = state.messages[userIndex];
  if (error.status === 401) {
    // The login expired: the words go back to the box, to send again after logging in.
    state.messages.splice(userIndex);
    renderAll();
    box.value = content;
    return;
  }
  Object.assign(user, { pending: false, failed: true, unsent: !user.id, error: error.message });
  state.failure = { content };
  renderAll();
  scrollToEnd();
  say(`Failed: ${error.message}`);
}

async function send(content, images = null) {
  const model = modelSelect.value;
  localStorage.setItem("polygenix.model", model);
  showNotice("");
  images = images || (await attachments.take());
  if (!images) {
    // An image could not be uploaded: the words go back with it, to try again.
    box.value = content;
    return;
  }
  const userIndex = append({ content, is_bot: false, pending: true, attachments: images.attachments, timestamp: new Date().toISOString() });
  const replyIndex = append({ content: "", is_bot: true, pending: true, model, timestamp: new Date().toISOString() });
  scrollToEnd();
  const payload = { content, model, stream: true, session_id: state.chat ? state.chat.chat_id : null };
  if (images.ids.length) payload.attachment_ids = images.ids;
  const wasNew = !state.chat;
  try {
    await runTurn("/api/ai_chat/request", "POST", payload, replyIndex, userIndex);
  } catch (error) {
    state.messages.splice(replyIndex, 1);
    if (wasNew && error.status !== 401) await adoptFailedChat(content);
    failTurn(error, userIndex, content);
  }
}

/** A first message whose model call failed is stored in a new chat: find it, so that Retry
 * answers it there instead of starting another. */
async function adoptFailedChat(content) {
  try {
    const { items } = await api.page("/api/ai_chat/sessions?page=1&page_size=1");
    const top = items[0];
    const expected = content.replace(/\s+/g, " ").trim();
    if (top && !sidebar.known(top.chat_id) && expected.startsWith(top.title.replace(/…$/, ""))) {
      state.chat = { ...top };
      setTitle(top.title);
      $("chat-actions").hidden = false;
      history.replaceState(null, "", `#/chat/${top.chat_id}`);
      sidebar.touch(top);
      sidebar.select(top.chat_id);
      const chat = await api.call(`/api/ai_chat/${top.chat_id}`);
      const last = chat.messages[chat.messages.length - 1];
      if (last && !last.is_bot) state.messages[state.messages.length - 1].id = last.id;
    }
  } catch {
    // Retry then sends the message again.
  }
}

async function again(kind, index, content = null, images = null) {
  const chatId = state.chat.chat_id;
  const model = modelSelect.value;
  const user = kind === "edit" ? state.messages[index] : state.messages.findLast((m) => !m.is_bot);
  const userIndex = state.messages.indexOf(user);
  const before = state.messages.slice();
  state.messages.splice(userIndex + 1);
  if (content !== null) user.content = content;
  if (images) user.attachments = images.attachments;
  Object.assign(user, { failed: false, error: null });
  renderAll();
  const replyIndex = append({ content: "", is_bot: true, pending: true, model, timestamp: new Date().toISOString() });
  scrollToEnd();
  const path = kind === "edit" ? `/api/ai_chat/${chatId}/messages/${user.id}` : `/api/ai_chat/${chatId}/regenerate`;
  const payload = kind === "edit" ? { content, model, stream: true } : { model, stream: true };
  if (images) payload.attachment_ids = images.ids; // the edit's images, those kept and added
  try {
    await runTurn(path, kind === "edit" ? "PUT" : "POST", payload, replyIndex, userIndex);
  } catch (error) {
    if (error.status === 404 && kind !== "edit") return gone(chatId);
    if (kind === "edit" || error.status === 409) {
      await open(chatId);
    } else {
      state.messages = before;
      renderAll();
    }
    showNotice(error.status === 409 ? "The conversation changed meanwhile: it has been reloaded." : `Failed: ${error.message}`);
  }
}

function retry() {
  const last = state.messages[state.messages.length - 1];
  if (last.id && state.chat) return again("regenerate");
  // Never stored (refused before the model was asked): send the words again.
  state.messages.pop();
  renderAll();
  const images = last.attachments?.length ? { ids: last.attachments.map((a) => a.id), attachments: last.attachments } : null;
  return send(last.content, images);
}

function startEdit(item, index) {
  const message = state.messages[index];
  const form = el("form", { class: "edit" });
  const field = el("textarea", { "aria-label": "Edit message", rows: "3" });
  field.value = message.content;
  const images = attachments.editor(message.attachments || [], field, form);
  const cancel = () => {
    images.discard();
    rerender(index);
  };
  form.append(
    field,
    images.element,
    el("div", { class: "buttons" },
      el("button", { type: "submit", class: "primary", text: "Save" }),
      el("button", { type: "button", text: "Cancel", onclick: cancel })),
  );
  let saving = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = field.value.trim();
    if (!text || state.controller || saving) return;
    saving = true;
    const kept = await images.take(); // null: an image failed to upload, and stays to be removed
    saving = false;
    if (kept && !state.controller) again("edit", index, text, kept);
  });
  field.addEventListener("keydown", (event) => {
    if (event.key === "Escape") cancel();
  });
  item.querySelector(".body").replaceWith(form);
  item.querySelector(".images")?.remove(); // shown in the form, to be kept or removed
  item.querySelector(".actions")?.remove();
  field.focus();
}

// --- the chat's own actions ----------------------------------------------------------------

function closePanels() {
  $("rename-form").hidden = true;
  $("session-panel").hidden = true;
  $("session-settings").setAttribute("aria-expanded", "false");
}

async function rename(event) {
  event.preventDefault();
  const text = $("rename-title").value.trim();
  if (!text) return;
  try {
    const chat = await api.call(`/api/ai_chat/${state.chat.chat_id}`, { method: "PATCH", json: { title: text } });
    state.chat.title = chat.title;
    setTitle(chat.title);
    sidebar.rename(chat.chat_id, chat.title);
    closePanels();
    $("rename").focus();
    say("Renamed");
  } catch (error) {
    if (error.status === 404) return gone(state.chat.chat_id);
    showNotice(error.message);
  }
}

async function saveSettings(event) {
  event.preventDefault();
  const prompt = $("session-prompt").value.trim();
  const model = $("session-model").value;
  try {
    const chat = await api.call(`/api/ai_chat/${state.chat.chat_id}`, {
      method: "PATCH",
      json: { system_prompt: prompt || null, model: model || null },
    });
    Object.assign(state.chat, { system_prompt: chat.system_prompt, model: chat.model });
    if (chat.model) modelSelect.value = chat.model;
    closePanels();
    say("Saved");
    showNotice("");
  } catch (error) {
    if (error.status === 404) return gone(state.chat.chat_id);
    showNotice(error.message);
  }
}

async function remove() {
  const dialog = $("confirm-delete");
  $("confirm-delete-name").textContent = state.chat.title;
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  if (dialog.returnValue !== "delete") return;
  const chatId = state.chat.chat_id;
  try {
    await api.call(`/api/ai_chat/${chatId}`, { method: "DELETE" });
  } catch (error) {
    if (error.status !== 404) return showNotice(error.message);
  }
  channel?.postMessage({ type: "deleted", chat_id: chatId });
  gone(chatId);
  showNotice("");
  location.hash = "#/";
  say("Chat deleted");
}

async function exportChats() {
  const dialog = $("export-dialog");
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  if (dialog.returnValue !== "export") return;
  const form = dialog.querySelector("form");
  const format = form.elements.format.value;
  const path = form.elements.scope.value === "all" || !state.chat
    ? `/api/ai_chat/export?format=${format}`
    : `/api/ai_chat/${state.chat.chat_id}/export?format=${format}`;
  try {
    say(`Downloaded ${await api.download(path)}`);
  } catch (error) {
    showNotice(error.message);
  }
}

// --- wiring --------------------------------------------------------------------------------

export function init() {
  attachments.init(showNotice);
  $("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!box.value.trim() || state.controller) return;
    // Sent before the list of models arrived: it is waited for, not dropped.
    if (!modelSelect.value) await modelsLoaded?.catch(() => {});
    if (!modelSelect.value) {
      showNotice("No model is available to your account: ask an admin for access.");
      return;
    }
    const content = box.value.trim();
    if (!content || state.controller) return;
    box.value = "";
    send(content);
  });
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  stopButton.addEventListener("click", () => state.controller?.abort());
  messagesList.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const item = button.closest("li.msg");
    const index = item ? Number(item.dataset.index) : -1;
    if (button.classList.contains("copy-code")) {
      navigator.clipboard?.writeText(button.closest(".code").querySelector("pre").textContent);
      say("Code copied");
      return;
    }
    if (state.controller) return;
    if (button.dataset.action === "regenerate") again("regenerate", index);
    if (button.dataset.action === "retry") retry();
    if (button.dataset.action === "edit") startEdit(item, index);
  });
  // Older messages are rendered as the top comes near (a scroll event, not an observer: one
  // held at the top must keep loading, and an observer speaks only when something changes).
  let scrollFrame = null;
  conversation.addEventListener("scroll", () => {
    if (scrollFrame) return;
    scrollFrame = requestAnimationFrame(() => {
      scrollFrame = null;
      if (conversation.scrollTop < 400) renderOlder();
    });
  });
  $("rename").addEventListener("click", () => {
    closePanels();
    $("rename-form").hidden = false;
    $("rename-title").value = state.chat.title;
    $("rename-title").select();
    $("rename-title").focus();
  });
  $("rename-form").addEventListener("submit", rename);
  $("rename-cancel").addEventListener("click", () => {
    closePanels();
    $("rename").focus();
  });
  $("rename-title").addEventListener("keydown", (event) => {
    if (event.key === "Escape") $("rename-cancel").click();
  });
  $("session-settings").addEventListener("click", () => {
    const open = $("session-panel").hidden;
    closePanels();
    $("session-panel").hidden = !open;
    $("session-settings").setAttribute("aria-expanded", String(open));
    if (open) {
      $("session-prompt").value = state.chat.system_prompt || "";
      $("session-model").value = state.chat.model || "";
      $("session-prompt").focus();
    }
  });
  $("session-panel").addEventListener("submit", saveSettings);
  $("delete").addEventListener("click", remove);
  $("export").addEventListener("click", exportChats);
  channel?.addEventListener("message", (event) => {
    if (event.data?.type === "deleted") gone(event.data.chat_id);
  });
}

export function reset() {
  state.chat = null;
  state.messages = [];
  state.drafts.clear();
  messagesList.replaceChildren();
  box.value = "";
  attachments.reset();
}
