// Model output is untrusted (a prompt-injected model can write anything): it is rendered as
// Markdown with every raw HTML tag shown as text, then sanitised by DOMPurify with a short list
// of allowed tags, and links are forced to open apart from the page. Images are shown as links,
// never loaded: a reply must not make the browser fetch an address of its choosing.
import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.mjs";

const escapeHtml = (text) =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const SAFE_URL = /^(https?:|mailto:|#)/i;

const markdown = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    html({ text }) {
      return escapeHtml(text);
    },
    image({ href, text }) {
      const label = escapeHtml(text || "image");
      if (!href || !SAFE_URL.test(href)) return label;
      return `<a href="${escapeHtml(href)}">${label}</a>`;
    },
    link({ href, tokens }) {
      const inner = this.parser.parseInline(tokens);
      if (!href || !SAFE_URL.test(href.trim())) return inner;
      return `<a href="${escapeHtml(href)}">${inner}</a>`;
    },
  },
});

const ALLOWED_TAGS = [
  "a", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
  "i", "input", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td",
  "th", "thead", "tr", "ul", "span",
];
const ALLOWED_ATTR = ["href", "title", "align", "type", "checked", "disabled", "start", "class"];

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    const href = node.getAttribute("href") || "";
    if (!SAFE_URL.test(href)) node.removeAttribute("href");
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
  if (node.tagName === "INPUT" && node.getAttribute("type") !== "checkbox") node.remove();
  if (node.tagName === "INPUT") node.setAttribute("disabled", "");
  if (node.hasAttribute("class") && !/^language-[\w+-]+$/.test(node.getAttribute("class"))) {
    node.removeAttribute("class");
  }
});

/** Untrusted Markdown as a sanitised DocumentFragment. */
export function renderMarkdown(text) {
  const html = markdown.parse(text || "", { async: false });
  const fragment = DOMPurify.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOW_DATA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  });
  for (const pre of fragment.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const lang = code && (code.className.match(/language-([\w+-]+)/) || [])[1];
    const bar = document.createElement("div");
    bar.className = "code-bar";
    const name = document.createElement("span");
    name.textContent = lang || "code";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy-code";
    copy.textContent = "Copy code";
    bar.append(name, copy);
    pre.before(bar);
    const figure = document.createElement("div");
    figure.className = "code";
    bar.before(figure);
    figure.append(bar, pre);
  }
  return fragment;
}

/** A search snippet: the server's escaped HTML, with only its <mark> tags kept. */
export function renderSnippet(html) {
  return DOMPurify.sanitize(html || "", {
    ALLOWED_TAGS: ["mark"],
    ALLOWED_ATTR: [],
    RETURN_DOM_FRAGMENT: true,
  });
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function when(iso) {
  return iso ? dateTime.format(new Date(iso)) : "";
}

export function money(value) {
  if (value === null || value === undefined) return "–";
  return `$${Number(value).toFixed(value < 1 ? 4 : 2)}`;
}

export function count(value) {
  return value === null || value === undefined ? "–" : Number(value).toLocaleString();
}
