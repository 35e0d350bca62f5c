// Small DOM helpers shared by every page.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "html") el.innerHTML = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function toast(message, kind = "error", ms = 6000) {
  const box = document.getElementById("toasts");
  if (!box) return alert(message);
  for (const existing of box.children) if (existing.firstChild?.textContent === message) return;
  const item = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, h("span", {}, message));
  const close = h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss", onclick: () => item.remove() }, "×");
  item.append(close);
  box.append(item);
  if (ms) setTimeout(() => item.remove(), ms);
}

export function showError(err) {
  const code = err && err.code ? ` (${err.code})` : "";
  toast(`${err && err.message ? err.message : String(err)}${code}`, "error", 9000);
}

let bannerTimer = null;
export function banner(message, kind = "warn", ms = 0) {
  const el = document.getElementById("banner");
  if (!el) return;
  clearTimeout(bannerTimer);
  if (!message) {
    el.hidden = true;
    return;
  }
  el.textContent = message;
  el.className = `banner banner-${kind}`;
  el.hidden = false;
  if (ms) bannerTimer = setTimeout(() => (el.hidden = true), ms);
}

export function fmtDate(iso) {
  if (!iso) return "";
  const [y, m, d] = iso.split("-");
  return `${m}/${d}/${y}`;
}

export function fmtTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" })
    : date.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + date.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });
}

export function fmtSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, (c) => {
    const r = (Math.random() * 16) | 0;
    return (c === "x" ? r : (r & 0x3) | 0x8).toString(16);
  });
}

// A modal <dialog> with a form; resolves with the FormData on submit, or null on cancel. A dialog that only shows
// something passes `cancelLabel: null`: its one button is the submit one ("Close").
export function formDialog({ title, body, submitLabel = "Save", cancelLabel = "Cancel", danger = false, onSubmit }) {
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": "dialog-title" });
  const error = h("p", { class: "alert alert-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit", class: `btn ${danger ? "btn-danger" : "btn-primary"}` }, submitLabel);
  const form = h(
    "form",
    { method: "dialog" },
    h("h2", { id: "dialog-title" }, title),
    body,
    error,
    h(
      "div",
      { class: "dialog-actions" },
      cancelLabel === null ? null : h("button", { type: "button", class: "btn", onclick: () => dialog.close() }, cancelLabel),
      submit,
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try {
      await onSubmit(new FormData(form), form);
      dialog.close();
    } catch (err) {
      error.textContent = err.message + (err.code ? ` (${err.code})` : "");
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  dialog.append(form);
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

export function toggle({ label, checked, onChange, id, disabled = false }) {
  const input = h("input", { type: "checkbox", role: "switch", class: "switch-input", id, checked, disabled });
  input.addEventListener("change", () => onChange(input.checked, input));
  return h("label", { class: "switch", for: id }, input, h("span", { class: "switch-track", "aria-hidden": "true" }), h("span", { class: "switch-label" }, label));
}
