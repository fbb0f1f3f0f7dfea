// One conversation, put together from its parts: the message list (conversation.js), which
// chat is open (session.js), sending and streamed replies (turns.js), editing a message
// (editing.js) and the chat's own actions (chat-actions.js). What the rest of the page calls.
import * as attachments from "./attachments.js";
import { box, conversation, messagesList, renderOlder, say, showNotice, state } from "./conversation.js";
import * as actions from "./chat-actions.js";
import { startEdit } from "./editing.js";
import { again, retry, init as initTurns } from "./turns.js";

export { current, gone, loadModels, newChat, open, recheck } from "./session.js";

export function init() {
  attachments.init(showNotice);
  initTurns();
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
  actions.init();
}

export function reset() {
  state.chat = null;
  state.messages = [];
  state.drafts.clear();
  messagesList.replaceChildren();
  box.value = "";
  attachments.reset();
}
