// Images for the next message: picked ("Attach images"), pasted into the message box, or dropped
// on it; each is uploaded at once (POST /api/ai_chat/attachments) and sent with the message as
// `attachment_ids`. A message's images are shown as thumbnails, read with the login's token
// (GET /api/ai_chat/attachments/{id}) and kept as blob: URLs for as long as the page lives.
import * as api from "./api.js";
import { el } from "./render.js";

const TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
const $ = (id) => document.getElementById(id);

let pending = []; // {file, url, upload: Promise<Attachment>, attachment, error}
let list = null;
let notify = () => {};
const shown = new Map(); // attachment id -> Promise<blob: URL>

export function init(showNotice) {
  notify = showNotice;
  const input = el("input", { type: "file", id: "attach-file", accept: TYPES.join(","), multiple: true, hidden: true, tabindex: "-1" });
  const button = el("button", { type: "button", id: "attach", text: "Attach images" });
  list = el("ul", { class: "attached", "aria-label": "Images to send" });
  list.hidden = true;
  $("attachments").replaceChildren(button, input, list);
  button.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    add([...input.files]);
    input.value = "";
  });
  $("message").addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (files.length) {
      event.preventDefault();
      add(files);
    }
  });
  const composer = $("composer");
  composer.addEventListener("dragover", (event) => {
    if ([...(event.dataTransfer?.types || [])].includes("Files")) {
      event.preventDefault();
      composer.classList.add("dropping");
    }
  });
  composer.addEventListener("dragleave", () => composer.classList.remove("dropping"));
  composer.addEventListener("drop", (event) => {
    composer.classList.remove("dropping");
    if (!event.dataTransfer?.files?.length) return;
    event.preventDefault();
    add([...event.dataTransfer.files]);
  });
  list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-remove]");
    if (!button) return;
    remove(Number(button.dataset.remove));
  });
}

function add(files) {
  for (const file of files) {
    // The server decides from the bytes; this only spares an upload bound to fail.
    if (file.type && !TYPES.includes(file.type)) {
      notify(`${file.name} is not a PNG, JPEG, GIF or WebP image.`);
      continue;
    }
    const item = { file, url: URL.createObjectURL(file), attachment: null, error: null };
    const form = new FormData();
    form.append("file", file, file.name);
    item.upload = api
      .call("/api/ai_chat/attachments", { method: "POST", body: form })
      .then((attachment) => {
        item.attachment = attachment;
        shown.set(attachment.id, Promise.resolve(item.url));
        return attachment;
      })
      .catch((error) => {
        item.error = error.message;
        notify(`${file.name}: ${error.message}`);
        throw error;
      })
      .finally(draw);
    item.upload.catch(() => {});
    pending.push(item);
  }
  draw();
}

function remove(index) {
  const [item] = pending.splice(index, 1);
  if (item?.attachment) {
    // Never sent: deleted now rather than left for the orphan sweep.
    api.call(`/api/ai_chat/attachments/${item.attachment.id}`, { method: "DELETE" }).catch(() => {});
  }
  draw();
  $("message").focus();
}

function draw() {
  if (!list) return;
  list.replaceChildren(
    ...pending.map((item, index) =>
      el(
        "li",
        { class: item.error ? "failed" : item.attachment ? "" : "uploading" },
        el("img", { src: item.url, alt: item.file.name }),
        el("span", { class: "sr-only", text: item.error ? `failed: ${item.error}` : item.attachment ? "ready" : "uploading" }),
        el("button", { type: "button", "data-remove": String(index), "aria-label": `Remove ${item.file.name}`, text: "×" }),
      ),
    ),
  );
  list.hidden = pending.length === 0;
}

/** The images to send with the next message, once uploaded; null if one failed (they stay). */
export async function take() {
  if (!pending.length) return { ids: [], attachments: [] };
  try {
    await Promise.all(pending.map((item) => item.upload));
  } catch {
    return null;
  }
  const taken = pending;
  pending = [];
  draw();
  return {
    ids: taken.map((item) => item.attachment.id),
    attachments: taken.map((item) => item.attachment),
  };
}

/** Thumbnails of a message's images, each loaded once with the login's token. */
export function thumbnails(attachments) {
  const figure = el("div", { class: "images" });
  attachments.forEach((attachment, n) => {
    const label = `Image ${n + 1} of ${attachments.length} (${attachment.media_type.replace("image/", "").toUpperCase()}, ${attachment.width}×${attachment.height})`;
    const image = el("img", { alt: label, width: String(Math.min(attachment.width, 160)) });
    figure.append(image);
    if (!shown.has(attachment.id)) {
      shown.set(
        attachment.id,
        api.request(`/api/ai_chat/attachments/${attachment.id}`).then(async (response) => URL.createObjectURL(await response.blob())),
      );
    }
    shown.get(attachment.id).then(
      (url) => {
        image.src = url;
      },
      () => {
        image.alt = `${label}: no longer available`;
      },
    );
  });
  return figure;
}

export function reset() {
  pending = [];
  draw();
}
