// Images for a message: picked ("Attach images"), pasted into the message box, or dropped on
// it; each is uploaded at once (POST /api/ai_chat/attachments) and sent with the message as
// `attachment_ids`. Editing a message, its images can be kept, removed or added to ("Attach
// image"): the edit sends the list it ends with. A message's images are shown as thumbnails,
// read with the login's token (GET /api/ai_chat/attachments/{id}) and kept as blob: URLs for as
// long as the page lives.
import * as api from "./api.js";
import { el } from "./render.js";

const TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
const $ = (id) => document.getElementById(id);

let notify = () => {};
const shown = new Map(); // attachment id -> Promise<blob: URL>
let composer = null;

const describe = (attachment) =>
  `${attachment.media_type.replace("image/", "").toUpperCase()}, ${attachment.width}×${attachment.height}`;

/** An <img> of a stored attachment, its bytes loaded once with the login's token. */
function picture(attachment, alt, attrs = {}) {
  const image = el("img", { alt, ...attrs });
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
      image.alt = `${alt}: no longer available`;
    },
  );
  return image;
}

/** A list of images for one message: those it has (`existing`, kept unless removed) and files
 * added, each uploaded at once. */
class Tray {
  constructor({ label, attach, existing = [], refocus = null }) {
    this.refocus = refocus; // what has the focus once an image is removed (else the next one)
    // {attachment, kept} for an image the message has; {file, url, upload, attachment, error}
    // for one added here.
    this.items = existing.map((attachment) => ({ attachment, kept: true }));
    this.input = el("input", { type: "file", accept: TYPES.join(","), multiple: true, hidden: true, tabindex: "-1" });
    this.button = el("button", { type: "button", text: attach });
    this.list = el("ul", { class: "attached", "aria-label": label });
    this.button.addEventListener("click", () => this.input.click());
    this.input.addEventListener("change", () => {
      this.add([...this.input.files]);
      this.input.value = "";
    });
    this.list.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-remove]");
      if (button) this.remove(Number(button.dataset.remove));
    });
    this.draw();
  }

  /** Pasted or dropped images on `target` (and drops on `zone`) are added here. */
  accept(target, zone = target) {
    target.addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
      if (files.length) {
        event.preventDefault();
        this.add(files);
      }
    });
    zone.addEventListener("dragover", (event) => {
      if ([...(event.dataTransfer?.types || [])].includes("Files")) {
        event.preventDefault();
        zone.classList.add("dropping");
      }
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dropping"));
    zone.addEventListener("drop", (event) => {
      zone.classList.remove("dropping");
      if (!event.dataTransfer?.files?.length) return;
      event.preventDefault();
      event.stopPropagation();
      this.add([...event.dataTransfer.files]);
    });
  }

  add(files) {
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
          // Removed (or the edit cancelled) while it uploaded: not left for the sweep.
          if (!this.items.includes(item)) forget(item);
          return attachment;
        })
        .catch((error) => {
          item.error = error.message;
          notify(`${file.name}: ${error.message}`);
          throw error;
        })
        .finally(() => this.draw());
      item.upload.catch(() => {});
      this.items.push(item);
    }
    this.draw();
  }

  remove(index) {
    const [item] = this.items.splice(index, 1);
    if (item && !item.kept) forget(item);
    this.draw();
    const next = this.list.querySelectorAll("button[data-remove]")[Math.min(index, this.items.length - 1)];
    (this.refocus || next || this.button).focus();
  }

  draw() {
    let n = 0;
    this.list.replaceChildren(
      ...this.items.map((item, index) => {
        if (item.kept) {
          n += 1;
          const name = `image ${n} (${describe(item.attachment)})`;
          return el(
            "li",
            {},
            picture(item.attachment, `Image ${n} (${describe(item.attachment)})`),
            el("button", { type: "button", "data-remove": String(index), "aria-label": `Remove ${name}`, text: "×" }),
          );
        }
        const state = item.error ? `failed: ${item.error}` : item.attachment ? "ready" : "uploading";
        return el(
          "li",
          { class: item.error ? "failed" : item.attachment ? "" : "uploading" },
          el("img", { src: item.url, alt: item.file.name }),
          el("span", { class: "sr-only", text: state }),
          el("button", { type: "button", "data-remove": String(index), "aria-label": `Remove ${item.file.name}`, text: "×" }),
        );
      }),
    );
    this.list.hidden = this.items.length === 0;
  }

  /** The images, once every added one is uploaded: {ids, attachments}; null if one failed
   * (they stay, to be removed or tried again). */
  async take() {
    try {
      await Promise.all(this.items.map((item) => item.upload));
    } catch {
      return null;
    }
    const taken = this.items;
    this.items = [];
    this.draw();
    return { ids: taken.map((item) => item.attachment.id), attachments: taken.map((item) => item.attachment) };
  }

  /** Given up (an edit cancelled): the images added here are deleted. */
  discard() {
    for (const item of this.items) if (!item.kept) forget(item);
    this.items = [];
  }
}

/** An image uploaded and never sent: deleted now rather than left for the orphan sweep. */
function forget(item) {
  if (!item.attachment) return; // still uploading: deleted once it is stored (see add)
  api.call(`/api/ai_chat/attachments/${item.attachment.id}`, { method: "DELETE" }).catch(() => {});
}

export function init(showNotice) {
  notify = showNotice;
  composer = new Tray({ label: "Images to send", attach: "Attach images", refocus: $("message") });
  composer.button.id = "attach";
  composer.input.id = "attach-file";
  $("attachments").replaceChildren(composer.button, composer.input, composer.list);
  composer.accept($("message"), $("composer"));
}

/** The images to send with the next message, once uploaded; null if one failed (they stay). */
export function take() {
  return composer.take();
}

/** The images of a message being edited, kept, removed or added to: `.element` goes in the
 * edit form, pastes into `field` and drops on `form` add images, `take()` gives the list to
 * send, `discard()` gives the edit up. */
export function editor(existing, field, form) {
  const tray = new Tray({ label: "Images of the message", attach: "Attach image", existing });
  tray.element = el("div", { class: "edit-images" }, tray.list, tray.button, tray.input);
  tray.accept(field, form);
  return tray;
}

/** Thumbnails of a message's images, each loaded once with the login's token. */
export function thumbnails(attachments) {
  const figure = el("div", { class: "images" });
  attachments.forEach((attachment, n) => {
    const label = `Image ${n + 1} of ${attachments.length} (${describe(attachment)})`;
    figure.append(picture(attachment, label, { width: String(Math.min(attachment.width, 160)) }));
  });
  return figure;
}

export function reset() {
  composer.items = [];
  composer.draw();
}
