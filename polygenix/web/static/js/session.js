// Which conversation is open: a new chat, a stored one (at a search hit, its words marked), or
// none when it was deleted elsewhere; each chat's unsent draft, and the list of models.
import * as api from "./api.js";
import { $, box, busy, modelSelect, renderAll, scrollToEnd, setTitle, showNotice, state } from "./conversation.js";
import { el } from "./render.js";
import * as sidebar from "./sidebar.js";

// --- models --------------------------------------------------------------------------------

export let modelsLoaded = null;

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

// --- opening a chat ------------------------------------------------------------------------

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

/** Close the chat's rename form and its settings panel. */
export function closePanels() {
  $("rename-form").hidden = true;
  $("session-panel").hidden = true;
  $("session-settings").setAttribute("aria-expanded", "false");
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
