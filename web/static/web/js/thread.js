// One conversation thread: messages oldest first, attachments, and a composer (text + files).
import { fmtSize, fmtTime, h, showError, uuid } from "./ui.js";

export const MESSAGE_FIELDS = `id sequence direction body sentAt senderName isAutomatic retracted { at reason by { fullName } }
  attachments { id filename contentType size url }`;
export const THREAD_FIELDS = `id status lastMessageAt unreadCount priority waitingSince assignee { id fullName }
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
  const note = message.direction === "INTERNAL_NOTE";
  const mine = perspective === "patient" ? message.direction === "FROM_PATIENT" : message.direction !== "FROM_PATIENT";
  const withdrawn = !!message.retracted;
  const files = message.attachments.map((a) =>
    h(
      "li",
      {},
      h("a", { href: a.url, class: "attachment", download: a.filename, target: "_blank", rel: "noopener" }, clip(), a.filename),
      h("span", { class: "muted small" }, ` ${fmtSize(a.size)}`),
    ),
  );
  const classes = ["msg", mine ? "msg-out" : "msg-in", note ? "msg-note" : "", message.isAutomatic ? "msg-automatic" : "", withdrawn ? "msg-is-withdrawn" : ""];
  return h(
    "li",
    { class: classes.filter(Boolean).join(" "), dataset: { sequence: message.sequence, messageId: message.id, direction: message.direction } },
    note ? h("div", { class: "note-label" }, "Internal note · only staff see this") : null,
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
// `sendNote` (staff) adds the "Internal note" mode to the composer; `quickReplies(query)` its Quick replies picker.
export function mountThread({ container, load, send, header, perspective = "staff", disabledReason = () => null, onRead = null, messageActions = [], sendNote = null, quickReplies = null }) {
  const head = h("div", { class: "thread-head" });
  const list = h("ol", { class: "messages", "aria-label": "Messages", "aria-live": "polite" });
  const body = h("textarea", { id: "composer-body", name: "body", rows: 3, placeholder: "Type a message…", "aria-label": "Message" });
  const files = h("input", { type: "file", id: "composer-files", name: "attachments", multiple: true, class: "file-input" });
  const fileNames = h("span", { class: "muted small file-names" });
  files.addEventListener("change", () => (fileNames.textContent = [...files.files].map((f) => f.name).join(", ")));
  const sendBtn = h("button", { type: "submit", class: "btn btn-primary" }, "Send");
  const notice = h("p", { class: "composer-notice", role: "status", hidden: true });
  let mode = "message";
  const modeTabs = sendNote
    ? h(
        "div",
        { class: "composer-modes", role: "radiogroup", "aria-label": "Composer mode" },
        [
          ["message", "Reply to patient"],
          ["note", "Internal note"],
        ].map(([value, label]) =>
          h("button", { type: "button", role: "radio", class: "composer-mode", id: `composer-mode-${value}`, "aria-checked": String(value === mode), onclick: () => setMode(value) }, label),
        ),
      )
    : null;
  const picker = quickReplies ? quickReplyPicker(quickReplies, (text) => insertText(text)) : null;
  const composer = h(
    "form",
    { class: "composer", "aria-label": "Write a message" },
    notice,
    modeTabs || picker ? h("div", { class: "composer-top" }, modeTabs, h("span", { class: "spacer" }), picker?.element) : null,
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

  function setMode(value) {
    mode = value;
    composer.classList.toggle("composer-note", mode === "note");
    composer.setAttribute("aria-label", mode === "note" ? "Write an internal note" : "Write a message");
    modeTabs?.querySelectorAll(".composer-mode").forEach((b) => b.setAttribute("aria-checked", String(b.id === `composer-mode-${mode}`)));
    body.placeholder = mode === "note" ? "Internal note — only staff see this; the patient is not told." : "Type a message…";
    body.setAttribute("aria-label", mode === "note" ? "Internal note" : "Message");
    sendBtn.textContent = mode === "note" ? "Add note" : "Send";
    pendingId = null;
    body.focus();
  }

  function insertText(text) {
    const start = body.selectionStart ?? body.value.length;
    const end = body.selectionEnd ?? body.value.length;
    body.value = body.value.slice(0, start) + text + body.value.slice(end);
    const at = start + text.length;
    body.focus();
    body.setSelectionRange(at, at);
    pendingId = null;
  }

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

  let headTimer = null;
  // A button of the header being pressed: rebuilt between the press and its release (a live event or a mark-read
  // answer lands then), its click would go to neither the old button nor the new one.
  let pressed = false;
  head.addEventListener("pointerdown", () => {
    pressed = true;
    const done = new AbortController();
    const release = () => {
      pressed = false;
      done.abort();
    };
    document.addEventListener("pointerup", release, { capture: true, signal: done.signal });
    document.addEventListener("pointercancel", release, { capture: true, signal: done.signal });
    window.addEventListener("blur", release, { signal: done.signal }); // released outside the window
  });
  function renderHead() {
    // Never under an open menu (the thread's ⋮) or a press: a live change waits until the person is done with it.
    clearTimeout(headTimer);
    if (pressed || head.querySelector(".menu:not([hidden])")) {
      headTimer = setTimeout(renderHead, 300);
      return;
    }
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
      const submit = mode === "note" ? sendNote : send;
      const sent = await submit({ body: text || null, files: chosen, clientMessageId: pendingId, conversation });
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
      sendBtn.textContent = mode === "note" ? "Add note" : "Send";
      body.focus();
    }
  });
  body.addEventListener("input", () => (pendingId = null));
  body.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) composer.requestSubmit();
  });

  return { refresh, show, addMessage, replaceMessage, update, setMode, focus: () => body.focus(), get conversation() { return conversation; } };
}

// A "Quick replies" button with a popover: type to search by title, pick one to insert its text.
function quickReplyPicker(load, insert) {
  const search = h("input", { type: "search", id: "quick-reply-search", placeholder: "Search quick replies by title", "aria-label": "Search quick replies", autocomplete: "off" });
  const results = h("ul", { class: "quick-reply-results", id: "quick-reply-results", "aria-label": "Quick replies", "aria-live": "polite" });
  const panel = h("div", { class: "quick-reply-panel", id: "quick-reply-panel", role: "dialog", "aria-label": "Quick replies", hidden: true }, search, results);
  const button = h("button", { type: "button", class: "btn btn-ghost btn-small", id: "quick-replies-btn", "aria-haspopup": "dialog", "aria-expanded": "false" }, "Quick replies");
  let timer = null;
  let asked = 0;
  const close = () => {
    panel.hidden = true;
    button.setAttribute("aria-expanded", "false");
  };
  const show = async () => {
    const query = search.value.trim();
    const request = ++asked;
    try {
      const replies = await load(query);
      if (request !== asked) return;
      results.replaceChildren(
        ...(replies.length
          ? replies.map((r) =>
              h(
                "li",
                {},
                h(
                  "button",
                  { type: "button", class: "quick-reply", dataset: { quickReplyId: r.id }, onclick: () => { close(); insert(r.body); } },
                  h("strong", {}, r.title),
                  h("span", { class: "muted small quick-reply-body" }, r.body),
                ),
              ),
            )
          : [h("li", { class: "empty muted small" }, query ? "No quick reply has that title." : "No quick replies yet. Mailbox admins add them under Config › Quick Replies.")]),
      );
    } catch (err) {
      results.replaceChildren(h("li", { class: "alert alert-error", role: "alert" }, err.message));
    }
  };
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    panel.hidden = !panel.hidden;
    button.setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) {
      search.value = "";
      show();
      search.focus();
    }
  });
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(show, 150);
  });
  panel.addEventListener("click", (event) => event.stopPropagation());
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      close();
      button.focus();
    } else if (event.key === "ArrowDown" && document.activeElement === search) {
      event.preventDefault();
      results.querySelector("button")?.focus();
    }
  });
  document.addEventListener("click", close);
  return { element: h("div", { class: "menu-wrap quick-replies" }, button, panel) };
}
