// Settings (name, password, API keys; for admins, users' model access and budgets) and Usage
// (tokens and cost per day and per model, as charts and tables; the budget left; for admins,
// everyone's).
import * as api from "./api.js";
import { count, el, money, when } from "./render.js";

const settingsView = document.getElementById("settings-view");
const usageView = document.getElementById("usage-view");

function field(label, input) {
  const id = `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return el("p", { class: "field" }, el("label", { for: id, text: label }), input);
}

function message() {
  return el("p", { class: "form-message", role: "status" });
}

function report(node, text, ok = true) {
  node.textContent = text;
  node.className = ok ? "form-message ok" : "form-message error";
}

// --- settings ------------------------------------------------------------------------------

export async function showSettings(user, onPasswordChanged) {
  const nameInput = el("input", { autocomplete: "name", maxlength: "100", required: true });
  nameInput.value = user.name;
  const nameMessage = message();
  const profile = el(
    "form",
    { class: "card", "aria-labelledby": "profile-title" },
    el("h3", { id: "profile-title", text: "Profile" }),
    el("p", { class: "muted", text: user.email }),
    field("Name", nameInput),
    el("button", { type: "submit", class: "primary", text: "Save" }),
    nameMessage,
  );
  profile.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const updated = await api.call(`/api/user/update/${user.id}`, { method: "PUT", json: { name: nameInput.value.trim() } });
      user.name = updated.name;
      document.getElementById("who").textContent = updated.name;
      report(nameMessage, "Saved.");
    } catch (error) {
      report(nameMessage, error.message, false);
    }
  });

  const current = el("input", { type: "password", autocomplete: "current-password", required: true });
  const fresh = el("input", { type: "password", autocomplete: "new-password", required: true, minlength: "8", maxlength: "128" });
  const passwordMessage = message();
  const password = el(
    "form",
    { class: "card", "aria-labelledby": "password-title" },
    el("h3", { id: "password-title", text: "Password" }),
    field("Current password", current),
    field("New password", fresh),
    el("button", { type: "submit", class: "primary", text: "Change password" }),
    passwordMessage,
  );
  password.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api.call(`/api/user/update/${user.id}`, {
        method: "PUT",
        json: { password: fresh.value, current_password: current.value },
      });
      // A new password ends every login, this one too: log in again with it, unseen.
      await onPasswordChanged(fresh.value);
      current.value = fresh.value = "";
      report(passwordMessage, "Password changed. Other devices must log in again.");
    } catch (error) {
      report(passwordMessage, error.message, false);
    }
  });

  const keys = await keysCard();
  const sections = [profile, password, keys];
  if (user.is_admin) sections.push(await adminCard());
  settingsView.replaceChildren(
    el("h2", { id: "settings-title", tabindex: "-1", text: "Settings" }),
    el("div", { class: "cards" }, ...sections),
  );
}

async function keysCard() {
  const name = el("input", { maxlength: "100", required: true });
  const made = el("div", { class: "new-key", hidden: true });
  const feedback = message();
  const table = el("tbody");
  const card = el(
    "form",
    { class: "card", "aria-labelledby": "keys-title" },
    el("h3", { id: "keys-title", text: "API keys" }),
    el("p", { class: "muted", text: "For /v1 (OpenAI-compatible clients) and the chat API. A key is shown once, when it is made." }),
    field("Key name", name),
    el("button", { type: "submit", class: "primary", text: "Create key" }),
    feedback,
    made,
    el("table", {}, el("caption", { class: "sr-only", text: "Your API keys" }),
      el("thead", {}, el("tr", {}, ...["Name", "Starts with", "Created", "Last used", ""].map((h) => el("th", { scope: "col", text: h })))),
      table),
  );
  const list = async () => {
    const keys = await api.call("/api/keys");
    table.replaceChildren(
      ...keys.map((key) =>
        el("tr", {},
          el("td", { text: key.name }),
          el("td", {}, el("code", { text: `${key.prefix}…` })),
          el("td", { text: when(key.created_at) }),
          el("td", { text: key.last_used_at ? when(key.last_used_at) : "never" }),
          el("td", {}, el("button", {
            type: "button",
            class: "danger",
            text: "Revoke",
            "aria-describedby": `key-${key.id}`,
            onclick: async () => {
              try {
                await api.call(`/api/keys/${key.id}`, { method: "DELETE" });
                report(feedback, `Key “${key.name}” revoked.`);
                made.hidden = true;
                await list();
              } catch (error) {
                report(feedback, error.message, false);
              }
            },
          }), el("span", { id: `key-${key.id}`, class: "sr-only", text: key.name }))),
      ),
    );
    if (!keys.length) table.append(el("tr", {}, el("td", { colspan: "5", class: "muted", text: "No keys yet." })));
  };
  card.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const key = await api.call("/api/keys", { method: "POST", json: { name: name.value.trim() } });
      const value = el("input", { readonly: true, "aria-label": "New key", class: "mono" });
      value.value = key.key;
      const copy = el("button", { type: "button", text: "Copy", onclick: async () => {
        value.select();
        try {
          await navigator.clipboard.writeText(key.key);
          report(feedback, "Copied.");
        } catch {
          report(feedback, "Select the key and copy it.", false);
        }
      } });
      made.replaceChildren(el("p", { text: "Your new key (it will not be shown again):" }), el("div", { class: "row" }, value, copy));
      made.hidden = false;
      name.value = "";
      report(feedback, `Key “${key.name}” created.`);
      await list();
      value.focus();
      value.select();
    } catch (error) {
      report(feedback, error.message, false);
    }
  });
  await list();
  return card;
}

async function adminCard() {
  const body = el("tbody");
  const card = el(
    "section",
    { class: "card wide", "aria-labelledby": "users-title" },
    el("h3", { id: "users-title", text: "Users" }),
    el("p", { class: "muted", text: "Model patterns (e.g. echo, groq/*) and budgets (e.g. 100000/day, 20/month, unlimited); empty uses the server's default." }),
    el("table", {},
      el("thead", {}, el("tr", {}, ...["User", "Models", "Token budget", "Cost budget", ""].map((h) => el("th", { scope: "col", text: h })))),
      body),
  );
  const users = [];
  for (let page = 1; page <= 50; page++) {
    const { items, pagination } = await api.page(`/api/user/all?page=${page}&page_size=100`);
    users.push(...items);
    if (!pagination.next_page) break;
  }
  for (const user of users) {
    const limits = await api.call(`/api/admin/users/${user.id}/limits`);
    const models = el("input", { "aria-label": `Models for ${user.email}`, placeholder: limits.effective.models.join(",") });
    models.value = limits.models ? limits.models.join(",") : "";
    const tokens = el("input", { "aria-label": `Token budget for ${user.email}`, placeholder: limits.effective.token_budget });
    tokens.value = limits.token_budget || "";
    const cost = el("input", { "aria-label": `Cost budget for ${user.email}`, placeholder: limits.effective.cost_budget });
    cost.value = limits.cost_budget || "";
    const note = el("span", { class: "form-message", role: "status" });
    const save = el("button", { type: "button", class: "primary", text: "Save", "aria-label": `Save limits for ${user.email}` });
    save.addEventListener("click", async () => {
      const list = models.value.split(",").map((m) => m.trim()).filter(Boolean);
      try {
        await api.call(`/api/admin/users/${user.id}/limits`, {
          method: "PUT",
          json: {
            models: models.value.trim() ? list : null,
            token_budget: tokens.value.trim() || null,
            cost_budget: cost.value.trim() || null,
          },
        });
        report(note, "Saved.");
      } catch (error) {
        report(note, error.message, false);
      }
    });
    body.append(
      el("tr", {},
        el("th", { scope: "row" }, el("span", { text: user.name }), el("br"), el("span", { class: "muted", text: user.email }), user.is_admin ? el("span", { class: "badge", text: "admin" }) : null),
        el("td", {}, models), el("td", {}, tokens), el("td", {}, cost), el("td", {}, save, note)),
    );
  }
  return card;
}

// --- usage ---------------------------------------------------------------------------------

/** A bar chart as SVG: one bar per row, its value written beside the label for those who
 * cannot see it (the table below repeats every figure). */
function chart(titleText, rows, key, value, format) {
  const width = 520;
  const barHeight = 22;
  const labelWidth = 150;
  const max = Math.max(...rows.map((r) => value(r) || 0), 1e-9);
  const height = rows.length * (barHeight + 6) + 8;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${Math.max(height, 30)}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${titleText}: ${rows.map((r) => `${key(r)} ${format(value(r))}`).join("; ") || "nothing yet"}`);
  rows.forEach((row, i) => {
    const y = 4 + i * (barHeight + 6);
    const text = document.createElementNS(ns, "text");
    text.setAttribute("x", "0");
    text.setAttribute("y", String(y + 15));
    text.setAttribute("class", "chart-label");
    text.textContent = key(row).length > 20 ? `${key(row).slice(0, 19)}…` : key(row);
    const bar = document.createElementNS(ns, "rect");
    const w = Math.max(2, ((value(row) || 0) / max) * (width - labelWidth - 90));
    bar.setAttribute("x", String(labelWidth));
    bar.setAttribute("y", String(y));
    bar.setAttribute("width", String(w));
    bar.setAttribute("height", String(barHeight));
    bar.setAttribute("class", "chart-bar");
    const figure = document.createElementNS(ns, "text");
    figure.setAttribute("x", String(labelWidth + w + 6));
    figure.setAttribute("y", String(y + 15));
    figure.setAttribute("class", "chart-label");
    figure.textContent = format(value(row));
    svg.append(text, bar, figure);
  });
  return el("figure", { class: "chart" }, el("figcaption", { text: titleText }), svg);
}

function table(caption, rows, keyName, keyOf) {
  return el("table", {},
    el("caption", { text: caption }),
    el("thead", {}, el("tr", {}, ...[keyName, "Calls", "Prompt tokens", "Completion tokens", "Cost"].map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...(rows.length ? rows.map((r) => el("tr", {},
      el("th", { scope: "row", text: keyOf(r) }),
      el("td", { text: count(r.calls) }),
      el("td", { text: count(r.prompt_tokens) }),
      el("td", { text: count(r.completion_tokens) }),
      el("td", { text: money(r.cost_usd) }))) : [el("tr", {}, el("td", { colspan: "5", class: "muted", text: "No usage in these days." }))])),
  );
}

function budgetText(name, budget, format) {
  if (!budget) return el("li", { text: `${name}: no budget` });
  const [limit, period] = String(budget.limit).split("/");
  const left = Math.max(0, Number(limit) - Number(budget.used));
  return el("li", { text: `${name}: ${format(left)} left of ${format(Number(limit))} this ${period} (${format(Number(budget.used))} used; resets ${when(budget.resets_at)})` });
}

export async function showUsage(user) {
  const [byDay, byModel] = await Promise.all([
    api.call("/api/usage?group_by=day"),
    api.call("/api/usage?group_by=model"),
  ]);
  const tokens = (r) => (r.prompt_tokens || 0) + (r.completion_tokens || 0);
  const parts = [
    el("h2", { id: "usage-title", tabindex: "-1", text: "Usage" }),
    el("p", { class: "muted", text: "The last 30 days (UTC)." }),
    el("section", { class: "card", "aria-labelledby": "budget-title" },
      el("h3", { id: "budget-title", text: "Budget left" }),
      el("ul", {}, budgetText("Tokens", byDay.budget.tokens, count), budgetText("Cost", byDay.budget.cost, money))),
    el("div", { class: "charts" },
      chart("Tokens per day", byDay.rows, (r) => r.day, tokens, count),
      chart("Cost per day", byDay.rows, (r) => r.day, (r) => r.cost_usd || 0, money),
      chart("Tokens per model", byModel.rows, (r) => r.model, tokens, count),
      chart("Cost per model", byModel.rows, (r) => r.model, (r) => r.cost_usd || 0, money)),
    table("Per day", byDay.rows, "Day", (r) => r.day),
    table("Per model", byModel.rows, "Model", (r) => r.model),
  ];
  if (user.is_admin) {
    const everyone = await api.call("/api/admin/usage?group_by=user");
    parts.push(
      el("h3", { text: "Everyone (admins only)" }),
      chart("Tokens per user", everyone.rows, (r) => r.email || `#${r.user_id}`, tokens, count),
      table("Per user", everyone.rows, "User", (r) => r.email || `#${r.user_id}`),
    );
  }
  usageView.replaceChildren(...parts);
}
