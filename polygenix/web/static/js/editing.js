// Editing a sent message in place: its words and images, then Save (a new reply from there)
// or Cancel (Escape).
import * as attachments from "./attachments.js";
import { rerender, state } from "./conversation.js";
import { el } from "./render.js";
import { again } from "./turns.js";

export function startEdit(item, index) {
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
