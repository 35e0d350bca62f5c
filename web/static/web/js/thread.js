// One conversation thread: messages oldest first, attachments, and a composer (text + files).
import { fmtSize, fmtTime, h, showError, uuid } from "./ui.js";

export const MESSAGE_FIELDS = `id sequence direction body sentAt senderName isAutomatic retracted { at reason by { fullName } }
  attachments { id filename contentType size url }`;
export const THREAD_FIELDS = `id status lastMessageAt unreadCount
  mailbox { id name status }
  patient { id fullName preferredPronoun dateOfBirth accountNumber }
  messages(last: 50) { totalCount edges { node { ${MESSAGE_FIELDS} } } }`;

const SVG = "http://www.w3.org/2000/svg";
function clip() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", "M21.4 11.1l-9.2 9.2a6 6 0 0 1-8.5-8.5l9.2-9.2a4 4 0 0 1 5.7 5.7l-9.2 9.2a2 2 0 0 1-2.8-2.8l8.5-8.5");
  svg.append(path);
  return svg;
}

// Staff see a withdrawn message whole, marked with who, when and why; the patient sees only that it was withdrawn.
function withdrawnNote(message, perspective) {
  const r = message.retracted;
  if (!r) return null;
  if (perspective === "patient") return h("div", { class: "msg-withdrawn" }, `The practice withdrew this message (${fmtTime(r.at)}).`);
  return h("div", { class: "msg-withdrawn" }, `Withdrawn by ${r.by?.fullName || "staff"} · ${fmtTime(r.at)} · ${r.reason || ""}`);
}

function messageMenu(message, actions) {
  const items = actions.filter(([, , allowed]) => allowed(message));
  if (!items.length) return null;
  const menu = h("ul", { class: "menu menu-right", role: "menu", hidden: true, "aria-label": `Message ${message.sequence} options` });
  const button = h("button", { type: "button", class: "kebab kebab-small", "aria-haspopup": "true", "aria-expanded": "false", "aria-label": `Options for message ${message.sequence}` }, "⋮");
  const close = () => {
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
  };
  for (const [label, run] of items) {
    menu.append(h("li", { role: "none" }, h("button", { type: "button", role: "menuitem", onclick: (e) => { e.stopPropagation(); close(); run(message); } }, label)));
  }
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    menu.hidden = !menu.hidden;
    button.setAttribute("aria-expanded", String(!menu.hidden));
    if (!menu.hidden) menu.querySelector("button").focus();
  });
  menu.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      close();
      button.focus();
    }
  });
  document.addEventListener("click", close);
  return h("div", { class: "menu-wrap msg-menu" }, button, menu);
}

function messageView(message, perspective, actions = []) {
  const mine = perspective === "patient" ? message.direction === "FROM_PATIENT" : message.direction === "TO_PATIENT";
  const withdrawn = !!message.retracted;
  const files = message.attachments.map((a) =>
    h(
      "li",
      {},
      h("a", { href: a.url, class: "attachment", download: a.filename, target: "_blank", rel: "noopener" }, clip(), a.filename),
      h("span", { class: "muted small" }, ` ${fmtSize(a.size)}`),
    ),
  );
  const classes = ["msg", mine ? "msg-out" : "msg-in", message.isAutomatic ? "msg-automatic" : "", withdrawn ? "msg-is-withdrawn" : ""];
  return h(
    "li",
    { class: classes.filter(Boolean).join(" "), dataset: { sequence: message.sequence, messageId: message.id } },
    h(
      "div",
      { class: "msg-meta" },
      h("strong", {}, message.senderName),
      message.isAutomatic ? h("span", { class: "chip-auto" }, "Automatic reply") : null,
      " · ",
      h("time", { datetime: message.sentAt }, fmtTime(message.sentAt)),
      withdrawn ? null : messageMenu(message, actions),
    ),
    withdrawnNote(message, perspective),
    message.body && !(withdrawn && perspective === "patient") ? h("div", { class: "msg-body" }, message.body) : null,
    files.length ? h("ul", { class: "attachments" }, files) : null,
  );
}

// `send` may return the stored message (it is shown at once; its live event is then a duplicate and ignored).
// `onRead` is called when the person works in a thread with unread messages: messages that arrive live are
// shown, but marked read only when someone is evidently at the screen, not by an unattended tab.
// `messageActions`: [label, run(message), allowed(message)] entries of each message's menu (staff: Withdraw…).
export function mountThread({ container, load, send, header, perspective = "staff", disabledReason = () => null, onRead = null, messageActions = [] }) {
  const head = h("div", { class: "thread-head" });
  const list = h("ol", { class: "messages", "aria-label": "Messages", "aria-live": "polite" });
  const body = h("textarea", { id: "composer-body", name: "body", rows: 3, placeholder: "Type a message…", "aria-label": "Message" });
  const files = h("input", { type: "file", id: "composer-files", name: "attachments", multiple: true, class: "file-input" });
  const fileNames = h("span", { class: "muted small file-names" });
  files.addEventListener("change", () => (fileNames.textContent = [...files.files].map((f) => f.name).join(", ")));
  const sendBtn = h("button", { type: "submit", class: "btn btn-primary" }, "Send");
  const notice = h("p", { class: "composer-notice", role: "status", hidden: true });
  const composer = h(
    "form",
    { class: "composer", "aria-label": "Write a message" },
    notice,
    body,
    h(
      "div",
      { class: "composer-actions" },
      h("label", { class: "btn btn-ghost attach-btn", for: "composer-files" }, clip(), "Attach files"),
      files,
      fileNames,
      h("span", { class: "spacer" }),
      h("span", { class: "muted small hint" }, "Ctrl+Enter to send"),
      sendBtn,
    ),
  );
  const section = h("section", { class: "thread", "aria-label": "Conversation" }, head, list, composer);
  container.replaceChildren(section);

  let conversation = null;
  let messages = [];
  let lastSeq = 0;
  let renderedKey = "";
  let pendingId = null;
  // Live changes that arrive while a load is under way are applied again on what it loaded: the load may have
  // been read before them.
  let loading = 0;
  let replay = [];

  function renderMessages() {
    const newest = messages.length ? messages[messages.length - 1].sequence : 0;
    list.replaceChildren(...(messages.length ? messages.map((m) => messageView(m, perspective, messageActions)) : [h("li", { class: "empty muted" }, "No messages yet. Write the first one below.")]));
    if (newest !== lastSeq) list.scrollTop = list.scrollHeight;
    lastSeq = newest;
  }

  function renderHead() {
    head.replaceChildren(header(conversation));
    const reason = disabledReason(conversation);
    notice.hidden = !reason;
    notice.textContent = reason || "";
  }

  // Shows a conversation as loaded over HTTP (with `messages`), replacing what was shown.
  function show(loaded) {
    conversation = loaded;
    if (!conversation) return null;
    const key = JSON.stringify(conversation);
    if (key === renderedKey) return conversation;
    renderedKey = key;
    messages = conversation.messages ? conversation.messages.edges.map((e) => e.node) : [];
    renderHead();
    renderMessages();
    return conversation;
  }

  async function refresh() {
    let loaded;
    loading += 1;
    try {
      loaded = await load();
    } catch (err) {
      showError(err);
      return null;
    } finally {
      loading -= 1;
    }
    const late = loading ? [] : replay;
    if (!loading) replay = [];
    const shown = show(loaded);
    for (const [apply, value] of late) apply(value);
    return shown;
  }

  // A message from a live event or a send's answer; one already shown (same id or sequence) is ignored.
  function addMessage(message) {
    if (loading && message) replay.push([addMessage, message]);
    if (!conversation || !message) return false;
    if (messages.some((m) => m.id === message.id || m.sequence === message.sequence)) return false;
    messages = [...messages, message].sort((a, b) => a.sequence - b.sequence);
    if (conversation.messages) conversation.messages.totalCount = (conversation.messages.totalCount || 0) + 1;
    renderedKey = "";
    renderMessages();
    return true;
  }

  // A shown message changed (withdrawn): its new state from the event or the mutation's answer replaces it.
  function replaceMessage(message) {
    if (loading && message) replay.push([replaceMessage, message]);
    if (!conversation || !message) return false;
    const at = messages.findIndex((m) => m.id === message.id);
    if (at < 0) return false;
    messages = messages.map((m, i) => (i === at ? { ...m, ...message } : m));
    renderedKey = "";
    renderMessages();
    return true;
  }

  // Conversation fields from a live event (status, unread count, …); nested objects are merged one level.
  function update(fields) {
    if (loading && fields) replay.push([update, fields]);
    if (!conversation || !fields) return;
    const next = { ...conversation };
    for (const [key, value] of Object.entries(fields)) {
      if (key === "messages" || value === undefined) continue;
      next[key] = value && typeof value === "object" && !Array.isArray(value) && conversation[key] ? { ...conversation[key], ...value } : value;
    }
    conversation = next;
    renderedKey = "";
    renderHead();
  }

  const read = () => {
    if (onRead && conversation?.id && conversation.unreadCount > 0) onRead(conversation);
  };
  for (const type of ["pointerdown", "keydown", "focusin"]) section.addEventListener(type, read);

  composer.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = body.value.trim();
    const chosen = [...files.files];
    if (!text && !chosen.length) {
      showError({ message: "Write a message or attach a file first." });
      body.focus();
      return;
    }
    pendingId = pendingId || uuid(); // the same id on a retry, so the server never stores it twice
    sendBtn.disabled = true;
    sendBtn.textContent = "Sending…";
    try {
      const sent = await send({ body: text || null, files: chosen, clientMessageId: pendingId, conversation });
      pendingId = null;
      body.value = "";
      files.value = "";
      fileNames.textContent = "";
      if (sent && sent.id && sent.sequence) addMessage(sent);
      else await refresh();
    } catch (err) {
      showError(err);
    } finally {
      sendBtn.disabled = false;
      sendBtn.textContent = "Send";
      body.focus();
    }
  });
  body.addEventListener("input", () => (pendingId = null));
  body.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) composer.requestSubmit();
  });

  return { refresh, show, addMessage, replaceMessage, update, focus: () => body.focus(), get conversation() { return conversation; } };
}
