// The open chat's own actions: rename, its instructions and default model, export, delete
// (and leaving a chat deleted in another tab of the same browser).
import * as api from "./api.js";
import { $, modelSelect, say, setTitle, showNotice, state } from "./conversation.js";
import { closePanels, gone } from "./session.js";
import * as sidebar from "./sidebar.js";

const channel = "BroadcastChannel" in window ? new BroadcastChannel("polygenix") : null;

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

export function init() {
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
