// One turn: the message box and sending, the streamed reply written as it comes, Stop,
// Regenerate, Retry and an edited message's new reply; failures keep the words to send again.
import * as api from "./api.js";
import * as attachments from "./attachments.js";
import {
  $,
  append,
  box,
  busy,
  conversation,
  messagesList,
  modelSelect,
  renderAll,
  rerender,
  rerenderTail,
  say,
  scrollToEnd,
  setTitle,
  showNotice,
  state,
  stopButton,
} from "./conversation.js";
import { renderMarkdown } from "./render.js";
import { gone, modelsLoaded, open } from "./session.js";
import * as sidebar from "./sidebar.js";

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

export async function again(kind, index, content = null, images = null) {
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

export function retry() {
  const last = state.messages[state.messages.length - 1];
  if (last.id && state.chat) return again("regenerate");
  // Never stored (refused before the model was asked): send the words again.
  state.messages.pop();
  renderAll();
  const images = last.attachments?.length ? { ids: last.attachments.map((a) => a.id), attachments: last.attachments } : null;
  return send(last.content, images);
}

export function init() {
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
}
