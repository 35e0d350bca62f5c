// The Workbench: Patient Messages Mailbox (mailboxes, conversations, thread) and the Config screens.
import { createClient } from "./gql.js";
import { createLive } from "./live.js";
import { MESSAGE_FIELDS, THREAD_FIELDS } from "./thread.js";
import { mountThread } from "./thread.js";
import { fmtDate, fmtTime, formDialog, h, showError, toast, toggle } from "./ui.js";
import { renderAccessControl, renderLogins, renderPracticeSettings, renderQuickReplies } from "./config.js";
import { searchForm } from "./message_search.js";
import { ASSIGNMENT_HISTORY, POOL_MUTATIONS, QUICK_REPLIES, STATS_FIELDS, fmtWait, matchesPool, poolOrder, poolVariables, renderStats } from "./pool.js";

const api = createClient();
const live = createLive();
const main = document.getElementById("app");

// What a conversation row shows; live events carry the same fields, so rows update from the event alone.
const CONVERSATION_ROW = `id status lastMessageAt createdAt unreadCount priority waitingSince assignee { id fullName }
  patient { id fullName preferredPronoun dateOfBirth accountNumber }`;

const Q = {
  me: `{ me { id username fullName memberships { practice { id name } role isClinician permissions } } practices { id name } }`,
  mailboxes: `query Mailboxes($practiceId: ID!, $status: MailboxStatus!, $subscribedOnly: Boolean!) {
    mailboxes(practiceId: $practiceId, status: $status, subscribedOnly: $subscribedOnly) { id name status isSubscribed subscriberCount unreadCount autoReply } }`,
  unread: `query Unread($practiceId: ID!) { mailboxes(practiceId: $practiceId, subscribedOnly: true) { id unreadCount } }`,
  conversations: `query Conversations($id: ID!, $status: ConversationStatus!, $assigneeId: ID, $unassigned: Boolean,
    $priority: ConversationPriority, $waitingOnly: Boolean, $order: ConversationOrder!) { mailbox(id: $id) { id name status isSubscribed
    conversations(status: $status, first: 50, assigneeId: $assigneeId, unassigned: $unassigned, priority: $priority,
      waitingOnly: $waitingOnly, order: $order) { totalCount edges { node { ${CONVERSATION_ROW} } } } } }`,
  stats: `query Stats($id: ID!, $since: DateTime) { mailbox(id: $id) { id stats(since: $since) { ${STATS_FIELDS} } } }`,
  history: `query History($id: ID!) { conversation(id: $id) { id ${ASSIGNMENT_HISTORY} } }`,
  quickReplies: QUICK_REPLIES,
  thread: `query Thread($id: ID!) { conversation(id: $id) { ${THREAD_FIELDS} } }`,
  search: `query Search($practiceId: ID!, $query: String!) { searchPatients(practiceId: $practiceId, query: $query, first: 20) {
    id fullName preferredPronoun dateOfBirth accountNumber } }`,
  practiceUsers: `query Users($practiceId: ID!) { practiceUsers(practiceId: $practiceId) { user { id fullName username } role } }`,
  subscribers: `query Subs($id: ID!) { mailbox(id: $id) { id subscribers { id } } }`,
  subscriberNames: `query SubNames($id: ID!) { mailbox(id: $id) { id subscribers { id fullName } } }`,
  meaningfulUse: `query MeaningfulUse($practiceId: ID!) { meaningfulUse(practiceId: $practiceId) { countsAsPatientMessaging clinicians { id fullName } } }`,
  // Everything the mailbox list, the conversation list, the open thread and the header badge show.
  mailboxEvents: `subscription MailboxEvents($practiceId: ID!, $after: String) { mailboxEvents(practiceId: $practiceId, after: $after) {
    cursor kind occurredAt mailboxId conversationId mailboxName userIds
    mailbox { id name status isSubscribed subscriberCount unreadCount autoReply }
    conversation { ${CONVERSATION_ROW} mailbox { id } }
    message { ${MESSAGE_FIELDS} clientMessageId } } }`,
};
const M = {
  createMailbox: `mutation($practiceId: ID!, $name: String!) { createMailbox(practiceId: $practiceId, name: $name) { id name } }`,
  renameMailbox: `mutation($id: ID!, $name: String!) { renameMailbox(mailboxId: $id, name: $name) { id name } }`,
  deactivateMailbox: `mutation($id: ID!) { deactivateMailbox(mailboxId: $id) { id status } }`,
  activateMailbox: `mutation($id: ID!) { activateMailbox(mailboxId: $id) { id status } }`,
  deleteMailbox: `mutation($id: ID!) { deleteMailbox(mailboxId: $id) }`,
  setAutoReply: `mutation($id: ID!, $text: String) { setMailboxAutoReply(mailboxId: $id, text: $text) { id name status isSubscribed subscriberCount unreadCount autoReply } }`,
  retract: `mutation($id: ID!, $reason: String!) { retractMessage(messageId: $id, reason: $reason) { ${MESSAGE_FIELDS} } }`,
  subscribe: `mutation($id: ID!) { subscribeToMailbox(mailboxId: $id) { id isSubscribed } }`,
  unsubscribe: `mutation($id: ID!) { unsubscribeFromMailbox(mailboxId: $id) { id isSubscribed } }`,
  setSubscribers: `mutation($id: ID!, $userIds: [ID!]!) { setMailboxSubscribers(mailboxId: $id, userIds: $userIds) { id subscriberCount } }`,
  start: `mutation($mailboxId: ID!, $patientId: ID!) { startConversation(mailboxId: $mailboxId, patientId: $patientId) { id status } }`,
  archive: `mutation($id: ID!) { archiveConversation(conversationId: $id) { id status } }`,
  unarchive: `mutation($id: ID!) { unarchiveConversation(conversationId: $id) { id status } }`,
  markRead: `mutation($id: ID!) { markConversationRead(conversationId: $id) { ${CONVERSATION_ROW} mailbox { id unreadCount } } }`,
  send: `mutation($id: ID!, $body: String, $attachments: [Upload!], $clientMessageId: String) {
    sendMessage(conversationId: $id, body: $body, attachments: $attachments, clientMessageId: $clientMessageId) { ${MESSAGE_FIELDS} clientMessageId } }`,
  note: `mutation($id: ID!, $body: String, $attachments: [Upload!], $clientMessageId: String) {
    addInternalNote(conversationId: $id, body: $body, attachments: $attachments, clientMessageId: $clientMessageId) { ${MESSAGE_FIELDS} clientMessageId } }`,
  ...POOL_MUTATIONS(CONVERSATION_ROW),
};

const state = {
  me: null,
  practices: [],
  practiceId: null,
  status: "ACTIVE",
  subscribedOnly: localStorage.getItem("pmm.subscribedOnly") === "1",
  mailboxes: [],
  mailboxError: null,
  mailboxId: null,
  convStatus: "ACTIVE",
  conversations: [], // rows of the open mailbox's list, valid for `conversationsOf`
  conversationsOf: null,
  unread: new Map(), // mailbox id -> unread count, subscribed active mailboxes (the header icon)
  conversationId: null,
  pane: "mailboxes",
  // The conversation list's filters and order (SPEC §6): who, urgent only, waiting only.
  pool: { who: "all", urgent: false, waiting: false, order: "RECENT_ACTIVITY" },
};
let stopLive = () => {};
let thread = null;

const membership = () => state.me.memberships.find((m) => m.practice.id === state.practiceId);
const isMailboxAdmin = () => !!membership()?.permissions.includes("MAILBOX_ADMIN_PERMISSION");
const isPracticeAdmin = () => ["OWNER", "ADMINISTRATOR"].includes(membership()?.role);
const currentMailbox = () => state.mailboxes.find((m) => m.id === state.mailboxId) || null;

// ---- header: practice switcher, message icon, Config menu ------------------------------------------

function setupHeader() {
  const switcher = document.getElementById("practice-switcher");
  switcher.replaceChildren(...state.practices.map((p) => h("option", { value: p.id, selected: p.id === state.practiceId }, p.name)));
  switcher.disabled = state.practices.length < 2;
  switcher.onchange = () => {
    state.practiceId = switcher.value;
    localStorage.setItem("pmm.practice", state.practiceId);
    state.mailboxId = null;
    state.conversationId = null;
    startLive();
    route();
  };
  const btn = document.getElementById("config-menu-btn");
  const menu = document.getElementById("config-menu");
  const close = () => {
    menu.hidden = true;
    btn.setAttribute("aria-expanded", "false");
  };
  btn.onclick = (event) => {
    event.stopPropagation();
    menu.hidden = !menu.hidden;
    btn.setAttribute("aria-expanded", String(!menu.hidden));
    if (!menu.hidden) menu.querySelector("a").focus();
  };
  menu.addEventListener("click", close);
  document.addEventListener("click", close);
  menu.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      close();
      btn.focus();
    }
  });
}

async function refreshUnreadIcon() {
  try {
    const data = await api.request(Q.unread, { practiceId: state.practiceId });
    state.unread = new Map(data.mailboxes.map((m) => [m.id, m.unreadCount]));
    renderUnreadIcon();
  } catch {
    /* the mailbox view shows the reason */
  }
}

function renderUnreadIcon() {
  const total = [...state.unread.values()].reduce((sum, n) => sum + n, 0);
  const badge = document.getElementById("msg-icon-count");
  badge.textContent = String(total);
  badge.hidden = total === 0;
  document.getElementById("msg-icon").setAttribute("aria-label", `Patient messages: ${total} unread`);
}

function setActiveNav(name) {
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === name));
  document.getElementById("config-menu-btn").classList.toggle("active", name === "config");
}

// ---- live updates ------------------------------------------------------------------------------------

function startLive() {
  stopLive();
  stopLive = live.watch({
    query: Q.mailboxEvents,
    variables: { practiceId: state.practiceId },
    onEvent: applyMailboxEvent,
    onResync: refreshAll, // the server no longer has the events we missed
    poll: refreshAll,
  });
}

// Applies one event's payload to the lists, the open thread and the badges: no request per event.
function applyMailboxEvent(event) {
  if (!event) return;
  if (event.kind === "MAILBOX_DELETED") removeMailbox(event.mailboxId);
  else if (event.mailbox) applyMailbox(event.mailbox);
  if (event.conversation) applyConversation(event.conversation, event.message, event.kind);
  if (event.kind === "QUICK_REPLIES_CHANGED") window.dispatchEvent(new CustomEvent("pmm:quick-replies-changed"));
}

function removeMailbox(id) {
  const before = currentMailbox();
  state.unread.delete(id);
  renderUnreadIcon();
  state.mailboxes = state.mailboxes.filter((m) => m.id !== id);
  mailboxesChanged(before);
}

function applyMailbox(fields) {
  const before = currentMailbox();
  const old = state.mailboxes.find((m) => m.id === fields.id);
  // A field the event could not answer (null with an error) keeps the value shown.
  const mailbox = { ...fields, subscriberCount: fields.subscriberCount ?? old?.subscriberCount ?? 0 };
  if (mailbox.isSubscribed && mailbox.status === "ACTIVE") state.unread.set(mailbox.id, mailbox.unreadCount);
  else state.unread.delete(mailbox.id);
  renderUnreadIcon();
  const listed = mailbox.status === state.status && (!state.subscribedOnly || mailbox.isSubscribed);
  const at = state.mailboxes.findIndex((m) => m.id === mailbox.id);
  if (at >= 0 && listed && state.mailboxes[at].name === mailbox.name) {
    state.mailboxes = state.mailboxes.map((m) => (m.id === mailbox.id ? { ...m, ...mailbox } : m));
  } else {
    const others = state.mailboxes.filter((m) => m.id !== mailbox.id);
    // The server lists mailboxes by name.
    const after = others.findIndex((m) => m.name.localeCompare(mailbox.name) > 0);
    if (listed) others.splice(after < 0 ? others.length : after, 0, mailbox);
    state.mailboxes = others;
  }
  mailboxesChanged(before);
}

// Upserts a conversation row into the open mailbox's list (most recent activity first) and the open thread.
function applyConversation(conversation, message, kind = "MESSAGE_ADDED") {
  const mailboxId = conversation.mailbox?.id;
  // A list being fetched may have been read before this event: it is applied again once the list is in.
  if (mailboxId && mailboxId === state.mailboxId && conversationsLoading) lateRows.push(conversation);
  if (mailboxId && state.conversationsOf === `${mailboxId}/${state.convStatus}`) {
    state.conversations = upsertRow(state.conversations, conversation);
    renderConversations();
  }
  if (thread && state.conversationId === conversation.id) {
    const { status, unreadCount, lastMessageAt, priority, waitingSince, assignee } = conversation;
    thread.update({ status, unreadCount, lastMessageAt, priority, waitingSince, assignee: assignee ?? null });
    if (message && kind === "MESSAGE_RETRACTED") thread.replaceMessage(message);
    else if (message) thread.addMessage(message);
  }
}

function upsertRow(rows, conversation) {
  const old = rows.find((c) => c.id === conversation.id);
  const others = rows.filter((c) => c.id !== conversation.id);
  const row = { ...old, ...conversation, assignee: conversation.assignee ?? null };
  if (conversation.status !== state.convStatus || !matchesPool(row, state.pool, state.me.id)) return others;
  return [...others, row].sort(poolOrder(state.pool.order));
}

async function refreshAll() {
  refreshUnreadIcon();
  if (!location.hash.startsWith("#/config")) {
    await loadMailboxes();
    if (state.mailboxId) await loadConversations();
    if (thread) await refreshThread();
  }
}

// ---- mailboxes pane ------------------------------------------------------------------------------------

function mailboxMenu(mailbox) {
  const items = [];
  const active = mailbox.status === "ACTIVE";
  if (active) items.push(mailbox.isSubscribed ? ["Unsubscribe", () => subscription(mailbox, false)] : ["Subscribe", () => subscription(mailbox, true)]);
  if (isMailboxAdmin()) {
    items.push(["Manage Subscribers", () => manageSubscribers(mailbox)]);
    items.push(["Rename", () => renameMailbox(mailbox)]);
    if (active) items.push(["Auto-reply…", () => autoReplyDialog(mailbox)]);
    items.push(active ? ["Deactivate", () => setActive(mailbox, false)] : ["Activate", () => setActive(mailbox, true)]);
    items.push(["Delete", () => deleteMailbox(mailbox)]);
  }
  if (!items.length) return null;
  return kebabMenu(items, { label: `${mailbox.name} options`, buttonLabel: `Options for ${mailbox.name}`, danger: "Delete", closeOthers: ".mailbox-list .menu" });
}

// A ⋮ button with its menu of [label, action] items: opens on click, arrow keys move, Escape or a click elsewhere closes.
function kebabMenu(items, { label, buttonLabel = label, buttonId, danger, closeOthers }) {
  const menu = h("ul", { class: "menu menu-right", role: "menu", hidden: true, "aria-label": label });
  const button = h("button", { type: "button", class: "kebab", id: buttonId, "aria-haspopup": "true", "aria-expanded": "false", "aria-label": buttonLabel }, "⋮");
  const close = () => {
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
  };
  for (const [text, action] of items) {
    menu.append(
      h("li", { role: "none" }, h("button", { type: "button", role: "menuitem", class: text === danger ? "danger" : "", onclick: (e) => { e.stopPropagation(); close(); action(); } }, text)),
    );
  }
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    if (closeOthers) document.querySelectorAll(closeOthers).forEach((m) => m !== menu && (m.hidden = true));
    menu.hidden = !menu.hidden;
    button.setAttribute("aria-expanded", String(!menu.hidden));
    if (!menu.hidden) menu.querySelector("button").focus();
  });
  menu.addEventListener("keydown", (event) => {
    const buttons = [...menu.querySelectorAll("button")];
    const i = buttons.indexOf(document.activeElement);
    if (event.key === "Escape") {
      close();
      button.focus();
    } else if (event.key === "ArrowDown") {
      event.preventDefault();
      buttons[(i + 1) % buttons.length].focus();
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      buttons[(i - 1 + buttons.length) % buttons.length].focus();
    }
  });
  document.addEventListener("click", close);
  return h("div", { class: "menu-wrap" }, button, menu);
}

let renderedMailboxes = "";
function renderMailboxList(force = false) {
  const list = document.getElementById("mailbox-list");
  if (!list) return;
  // Re-render only on change, and never under an open menu or a keyboard user's focus.
  const key = JSON.stringify([state.mailboxes, state.mailboxError?.message, state.mailboxId, state.status, state.subscribedOnly]);
  if (!force && key === renderedMailboxes && list.dataset.rendered) return;
  if (list.querySelector(".menu:not([hidden])")) return;
  renderedMailboxes = key;
  list.dataset.rendered = "1";
  const focused = document.activeElement?.closest?.(".mailbox");
  const focusKey = focused ? [focused.dataset.mailboxId, document.activeElement.classList.contains("kebab") ? ".kebab" : ".mailbox-select"] : null;
  renderMailboxItems(list);
  const newMailboxBtn = document.getElementById("new-mailbox");
  if (newMailboxBtn) newMailboxBtn.hidden = !!state.mailboxError;
  // Meaningful Use follows who is subscribed to which active mailbox, not unread counts a live event moves.
  const muKey = JSON.stringify(state.mailboxes.map((m) => [m.id, m.status, m.subscriberCount]));
  if (muKey !== meaningfulUseKey) {
    meaningfulUseKey = muKey;
    refreshMeaningfulUse();
  }
  if (focusKey) list.querySelector(`[data-mailbox-id="${focusKey[0]}"] ${focusKey[1]}`)?.focus();
}

function renderMailboxItems(list) {
  if (state.mailboxError) {
    // The notice above says why there is no list (e.g. the workbench is switched off): no "create one" hint.
    list.replaceChildren();
    return;
  }
  if (!state.mailboxes.length) {
    const empty = state.subscribedOnly ? "You are not subscribed to any mailbox here." : state.status === "ACTIVE" ? "No mailboxes yet." : "No deactivated mailboxes.";
    list.replaceChildren(h("li", { class: "empty muted" }, empty, isMailboxAdmin() && state.status === "ACTIVE" && !state.subscribedOnly ? " Create one with + New Mailbox." : ""));
    return;
  }
  list.replaceChildren(
    ...state.mailboxes.map((m) => {
      const deactivated = m.status === "DEACTIVATED";
      return h(
        "li",
        { class: `mailbox ${m.id === state.mailboxId ? "selected" : ""} ${deactivated ? "deactivated" : ""}`, dataset: { mailboxId: m.id, name: m.name } },
        h(
          "button",
          { type: "button", class: "mailbox-select", "aria-current": m.id === state.mailboxId ? "true" : null, onclick: () => selectMailbox(m.id) },
          h("span", { class: "mailbox-name" }, m.name),
          h("span", { class: "mailbox-sub muted small" }, deactivated ? "Deactivated" : `${m.isSubscribed ? "Subscribed" : "Not subscribed"} · ${m.subscriberCount} subscriber${m.subscriberCount === 1 ? "" : "s"}`),
          m.isSubscribed && m.unreadCount ? h("span", { class: "badge", "aria-label": `${m.unreadCount} unread` }, m.unreadCount) : null,
        ),
        mailboxMenu(m),
      );
    }),
  );
}

async function loadMailboxes() {
  const before = currentMailbox();
  try {
    const data = await api.request(Q.mailboxes, { practiceId: state.practiceId, status: state.status, subscribedOnly: state.subscribedOnly });
    state.mailboxes = data.mailboxes;
    state.mailboxError = null;
    const notice = document.getElementById("mailbox-notice");
    if (notice) notice.hidden = true;
  } catch (err) {
    state.mailboxes = [];
    state.mailboxError = err;
    const notice = document.getElementById("mailbox-notice");
    if (notice) {
      const settingsLink = err.code === "FEATURE_DISABLED" && isPracticeAdmin() ? h("a", { href: "#/config/settings" }, "Open Practice Settings") : null;
      notice.replaceChildren(err.message, settingsLink ? " " : "", settingsLink || "");
      notice.hidden = false;
    } else showError(err);
  }
  mailboxesChanged(before, false);
}

// After the mailbox list changed (refetched, or from an event): the open mailbox may be gone or changed.
function mailboxesChanged(before, fromEvent = true) {
  const now = currentMailbox();
  if (state.mailboxId && !now) {
    state.mailboxId = null;
    state.conversationId = null;
    thread = null;
    renderConversationsPane();
    renderThreadPane();
    document.querySelector("#pane-conversations .placeholder p").textContent =
      "The mailbox you had open is no longer in this list: it was deactivated, deleted or filtered out. Select a mailbox.";
  } else if (fromEvent && before && now && before.id === now.id) {
    if (before.status !== now.status || before.isSubscribed !== now.isSubscribed) {
      if (!now.isSubscribed || now.status !== "ACTIVE") {
        state.conversationId = null;
        thread = null;
        renderThreadPane();
      }
      renderConversationsPane();
      // A (un)subscription changes what the pane may show, and the event does not carry the mailbox's
      // conversations: fetch just that list (a deactivated mailbox's notice needs no request).
      state.conversationsOf = null;
      loadConversations();
    } else if (before.name !== now.name) {
      const title = document.getElementById("conversation-pane-title");
      if (title) title.textContent = now.name;
      thread?.update({ mailbox: { name: now.name } });
    }
  }
  renderMailboxList();
}

// SPEC: the practice counts as doing patient messaging while a clinician is subscribed to an active mailbox.
let meaningfulUseRequest = 0;
let meaningfulUseKey = null;
async function refreshMeaningfulUse() {
  const box = document.getElementById("meaningful-use");
  if (!box) return;
  const request = ++meaningfulUseRequest;
  let mu;
  try {
    mu = (await api.request(Q.meaningfulUse, { practiceId: state.practiceId })).meaningfulUse;
  } catch {
    box.hidden = true;
    return;
  }
  if (request !== meaningfulUseRequest) return;
  const names = mu.clinicians.map((c) => c.fullName).join(", ");
  box.className = `meaningful-use small ${mu.countsAsPatientMessaging ? "mu-yes" : "mu-no"}`;
  box.replaceChildren(
    h("strong", {}, "Meaningful Use: ", mu.countsAsPatientMessaging ? "counts as patient messaging" : "does not count as patient messaging"),
    h("p", {}, mu.countsAsPatientMessaging ? `Clinicians subscribed to an active mailbox: ${names}.` : "No clinician is subscribed to an active mailbox. Subscribe one to count as doing patient messaging."),
  );
  box.hidden = false;
}

async function subscription(mailbox, on) {
  try {
    await api.request(on ? M.subscribe : M.unsubscribe, { id: mailbox.id });
    toast(on ? `Subscribed to ${mailbox.name}.` : `Unsubscribed from ${mailbox.name}.`, "ok", 3000);
    await refreshAll();
    if (state.mailboxId === mailbox.id) {
      // The open mailbox's pane depends on the subscription (+ New Conversation, the subscribe prompt).
      renderConversationsPane();
      await loadConversations();
    }
  } catch (err) {
    showError(err);
  }
}

function newMailbox() {
  const input = h("input", { id: "new-mailbox-name", name: "name", required: true, maxlength: 100, autocomplete: "off", placeholder: "e.g. Billing, Scheduling, Dr. Patel" });
  formDialog({
    title: "New mailbox",
    body: [h("label", { for: "new-mailbox-name" }, "Mailbox name"), input],
    submitLabel: "Create mailbox",
    async onSubmit(form) {
      const data = await api.request(M.createMailbox, { practiceId: state.practiceId, name: form.get("name") });
      toast(`Mailbox “${data.createMailbox.name}” created.`, "ok", 3000);
      state.status = "ACTIVE";
      await loadMailboxes();
      renderFilters();
    },
  });
  input.focus();
}

function renameMailbox(mailbox) {
  const input = h("input", { id: "rename-mailbox", name: "name", required: true, maxlength: 100, value: mailbox.name });
  formDialog({
    title: `Rename “${mailbox.name}”`,
    body: [h("label", { for: "rename-mailbox" }, "New name"), input],
    submitLabel: "Rename",
    async onSubmit(form) {
      await api.request(M.renameMailbox, { id: mailbox.id, name: form.get("name") });
      await refreshAll();
    },
  });
  input.select();
}

// The text patients get back when their message opens a conversation here or reactivates an archived one.
function autoReplyDialog(mailbox) {
  const input = h("textarea", { id: "auto-reply-text", name: "text", rows: 5, maxlength: 2000, placeholder: "e.g. Thanks for your message. We answer within two working days." }, mailbox.autoReply || "");
  formDialog({
    title: `Auto-reply of “${mailbox.name}”`,
    body: [
      h("label", { for: "auto-reply-text" }, "Sent once, signed with the mailbox's name, when a patient's message opens a conversation or reactivates an archived one. Leave empty to turn it off."),
      input,
    ],
    submitLabel: "Save",
    async onSubmit(form) {
      const text = form.get("text").trim();
      const saved = (await api.request(M.setAutoReply, { id: mailbox.id, text: text || null })).setMailboxAutoReply;
      applyMailbox(saved);
      toast(saved.autoReply ? `Auto-reply of ${saved.name} saved.` : `Auto-reply of ${saved.name} turned off.`, "ok", 3000);
    },
  });
  input.focus();
}

// Withdraw a message entered in error: the patient then sees only that it was withdrawn; nothing is deleted.
function withdrawDialog(message) {
  const input = h("input", { id: "withdraw-reason", name: "reason", required: true, maxlength: 500, placeholder: "e.g. sent to the wrong patient" });
  formDialog({
    title: "Withdraw this message?",
    body: [
      h("p", { class: "muted small" }, "The patient will see only that the practice withdrew a message. Staff keep seeing it, marked with who, when and why."),
      h("label", { for: "withdraw-reason" }, "Reason"),
      input,
    ],
    submitLabel: "Withdraw",
    danger: true,
    async onSubmit(form) {
      const withdrawn = (await api.request(M.retract, { id: message.id, reason: form.get("reason") })).retractMessage;
      thread?.replaceMessage(withdrawn);
    },
  });
  input.focus();
}

const mayWithdraw = (m) =>
  m.direction === "TO_PATIENT" && !m.retracted && (isMailboxAdmin() || (!m.isAutomatic && m.senderName === state.me.fullName));

async function setActive(mailbox, on) {
  try {
    await api.request(on ? M.activateMailbox : M.deactivateMailbox, { id: mailbox.id });
    toast(on ? `${mailbox.name} is active again.` : `${mailbox.name} is deactivated. Patients can no longer message it.`, "ok", 4000);
    if (!on && state.mailboxId === mailbox.id) {
      state.mailboxId = null;
      state.conversationId = null;
      thread = null;
      renderConversationsPane();
      renderThreadPane();
    }
    await refreshAll();
  } catch (err) {
    showError(err);
  }
}

function deleteMailbox(mailbox) {
  formDialog({
    title: `Delete “${mailbox.name}”?`,
    body: h("p", {}, "A mailbox can only be deleted when it has no active or archived conversations. This cannot be undone."),
    submitLabel: "Delete mailbox",
    danger: true,
    async onSubmit() {
      await api.request(M.deleteMailbox, { id: mailbox.id });
      toast(`${mailbox.name} deleted.`, "ok", 3000);
      if (state.mailboxId === mailbox.id) state.mailboxId = null;
      await refreshAll();
    },
  });
}

async function manageSubscribers(mailbox) {
  let users;
  let current;
  try {
    const [u, s] = await Promise.all([api.request(Q.practiceUsers, { practiceId: state.practiceId }), api.request(Q.subscribers, { id: mailbox.id })]);
    users = u.practiceUsers;
    current = new Set(s.mailbox.subscribers.map((x) => x.id));
  } catch (err) {
    showError(err);
    return;
  }
  const rows = users.map((m, i) =>
    h("li", {}, toggle({ id: `sub-${i}`, label: `${m.user.fullName} (${m.user.username})`, checked: current.has(m.user.id), onChange: (on) => (on ? current.add(m.user.id) : current.delete(m.user.id)) })),
  );
  formDialog({
    title: `Subscribers of ${mailbox.name}`,
    body: h("ul", { class: "toggle-list" }, rows),
    async onSubmit() {
      await api.request(M.setSubscribers, { id: mailbox.id, userIds: [...current] });
      toast(`Subscribers of ${mailbox.name} saved.`, "ok", 3000);
      await refreshAll();
    },
  });
}

function renderFilters() {
  const select = document.getElementById("mailbox-status");
  if (select) select.value = state.status;
}

// ---- conversations pane --------------------------------------------------------------------------------

async function selectMailbox(id) {
  state.mailboxId = id;
  state.conversationId = null;
  state.convStatus = "ACTIVE";
  thread = null;
  state.pane = "conversations";
  renderMailboxList();
  renderThreadPane();
  renderConversationsPane();
  await loadConversations();
  document.getElementById("conversation-pane-title")?.focus();
}

function renderConversationsPane() {
  const pane = document.getElementById("pane-conversations");
  const mailbox = currentMailbox();
  document.querySelector(".workbench").dataset.pane = state.pane;
  if (!mailbox) {
    pane.replaceChildren(h("div", { class: "placeholder" }, h("p", {}, "Select a mailbox to see its conversations.")));
    return;
  }
  const tabs = h(
    "div",
    { class: "tabs", role: "tablist", "aria-label": "Conversation status" },
    ["ACTIVE", "ARCHIVED"].map((s) =>
      h("button", { type: "button", role: "tab", class: "tab", "aria-selected": String(state.convStatus === s), onclick: () => { state.convStatus = s; renderConversationsPane(); loadConversations(); } }, s === "ACTIVE" ? "Active" : "Archived"),
    ),
  );
  // Only subscribers start conversations from the mailbox view; the others get the subscribe prompt instead.
  const newBtn = mailbox.status === "ACTIVE" ? h("button", { type: "button", class: "btn btn-primary btn-small", id: "new-conversation", hidden: !mailbox.isSubscribed, onclick: newConversation }, "+ New Conversation") : null;
  pane.replaceChildren(
    h(
      "div",
      { class: "pane-head" },
      h("button", { type: "button", class: "back-btn", "aria-label": "Back to mailboxes", onclick: () => showPane("mailboxes") }, "‹"),
      h("h2", { id: "conversation-pane-title", tabindex: "-1" }, mailbox.name),
      newBtn,
    ),
    tabs,
    mailbox.status === "ACTIVE" ? poolFilters() : null,
    h("p", { id: "mailbox-stats", class: "mailbox-stats small muted", "aria-live": "polite", hidden: true }),
    h("div", { id: "conversation-body", class: "pane-body" }, h("p", { class: "muted pad" }, "Loading…")),
  );
}

// Who, urgent only, waiting only, and the order of the list; a change asks the server for the filtered list.
function poolFilters() {
  const who = h(
    "select",
    { id: "filter-assignee", "aria-label": "Assigned to" },
    h("option", { value: "all" }, "Everyone's"),
    h("option", { value: "me" }, "Assigned to me"),
    h("option", { value: "unassigned" }, "Unassigned"),
    h("option", { value: "assigned" }, "Assigned to someone"),
  );
  who.value = state.pool.who;
  const order = h(
    "select",
    { id: "filter-order", "aria-label": "Order" },
    h("option", { value: "RECENT_ACTIVITY" }, "Most recent first"),
    h("option", { value: "URGENT_FIRST" }, "Urgent first"),
    h("option", { value: "LONGEST_WAITING" }, "Longest waiting first"),
  );
  order.value = state.pool.order;
  const changed = () => {
    state.pool = { ...state.pool, who: who.value, order: order.value };
    loadConversations();
  };
  who.addEventListener("change", changed);
  order.addEventListener("change", changed);
  const flag = (id, label, key) =>
    toggle({ id, label, checked: state.pool[key], onChange(on) { state.pool = { ...state.pool, [key]: on }; loadConversations(); } });
  return h("div", { class: "pool-filters", role: "group", "aria-label": "Filter conversations" }, who, order, flag("filter-urgent", "Urgent", "urgent"), flag("filter-waiting", "Waiting", "waiting"));
}

// The stats line is an aggregate no event carries (medians, the oldest wait, which ages by itself): it is read
// with the list, and again every minute while the mailbox is open, never per event.
const STATS_EVERY_MS = 60_000;
let statsTimer = null;

async function refreshStats() {
  clearTimeout(statsTimer);
  statsTimer = setTimeout(() => document.getElementById("mailbox-stats") && refreshStats(), STATS_EVERY_MS);
  const mailboxId = state.mailboxId;
  const since = new Date(Date.now() - 30 * 24 * 3600 * 1000).toISOString();
  let stats;
  try {
    stats = (await api.request(Q.stats, { id: mailboxId, since })).mailbox.stats;
  } catch {
    stats = null; // not subscribed, not an admin: the line stays hidden
  }
  const line = document.getElementById("mailbox-stats");
  if (!line || mailboxId !== state.mailboxId) return;
  renderStats(line, stats);
}

async function loadQuickReplies(query) {
  return (await api.request(Q.quickReplies, { practiceId: state.practiceId, query: query || null })).quickReplies;
}

let conversationsLoading = 0;
let lateRows = [];

async function loadConversations() {
  const mailbox = currentMailbox();
  const body = document.getElementById("conversation-body");
  state.conversationsOf = null;
  if (!mailbox || !body) return;
  if (mailbox.status === "DEACTIVATED") {
    delete body.dataset.key;
    body.replaceChildren(h("div", { class: "prompt" }, h("p", {}, `${mailbox.name} is deactivated: it is unavailable in the mailbox view and patients cannot message it.`), h("p", { class: "muted small" }, "Its history stays readable from each patient's chart summary."), isMailboxAdmin() ? h("button", { type: "button", class: "btn", onclick: () => setActive(mailbox, true) }, "Activate mailbox") : null));
    return;
  }
  let data;
  const status = state.convStatus;
  const poolKey = JSON.stringify(state.pool);
  conversationsLoading += 1;
  try {
    data = await api.request(Q.conversations, { id: mailbox.id, status, ...poolVariables(state.pool, state.me.id) });
  } catch (err) {
    delete body.dataset.key;
    showNewConversation(false);
    if (err.code === "NOT_SUBSCRIBED") {
      body.replaceChildren(
        h(
          "div",
          { class: "prompt", role: "region", "aria-label": "Subscribe prompt" },
          h("p", { class: "prompt-title" }, `You are not subscribed to ${mailbox.name}.`),
          h("p", { class: "muted" }, err.message),
          h("button", { type: "button", class: "btn btn-primary", id: "subscribe-prompt", onclick: () => subscription(mailbox, true) }, `Subscribe to ${mailbox.name}`),
        ),
      );
    } else body.replaceChildren(h("p", { class: "alert alert-error", role: "alert" }, err.message));
    return;
  } finally {
    conversationsLoading -= 1;
  }
  if (mailbox.id !== state.mailboxId || status !== state.convStatus || poolKey !== JSON.stringify(state.pool)) return; // the person moved on meanwhile
  showNewConversation(true);
  refreshStats();
  state.conversations = data.mailbox.conversations.edges.map((e) => e.node);
  for (const row of conversationsLoading ? [] : lateRows) if (row.mailbox?.id === mailbox.id) state.conversations = upsertRow(state.conversations, row);
  if (!conversationsLoading) lateRows = [];
  state.conversationsOf = `${mailbox.id}/${status}`;
  renderConversations();
}

function renderConversations() {
  const body = document.getElementById("conversation-body");
  if (!body) return;
  const edges = state.conversations.map((node) => ({ node }));
  const key = JSON.stringify([edges, state.conversationId, state.convStatus, state.pool]);
  if (body.dataset.key === key) return;
  body.dataset.key = key;
  const focusedId = document.activeElement?.closest?.(".conversation")?.dataset.conversationId;
  if (!edges.length) {
    const filtered = state.pool.who !== "all" || state.pool.urgent || state.pool.waiting || state.pool.order === "LONGEST_WAITING";
    body.replaceChildren(h("p", { class: "empty muted pad" }, filtered ? "No conversation matches these filters." : state.convStatus === "ACTIVE" ? "No active conversations. Start one with + New Conversation." : "No archived conversations."));
    return;
  }
  body.replaceChildren(
    h(
      "ul",
      { class: "conversation-list", "aria-label": "Conversations" },
      edges.map(({ node: c }) =>
        h(
          "li",
          { class: `conversation ${c.id === state.conversationId ? "selected" : ""}`, dataset: { conversationId: c.id } },
          h(
            "button",
            { type: "button", class: "conversation-select", "aria-current": c.id === state.conversationId ? "true" : null, onclick: () => openConversation(c.id) },
            h("span", { class: "conv-top" }, h("span", { class: "conv-name" }, c.patient.fullName), h("span", { class: "muted small" }, fmtTime(c.lastMessageAt))),
            h("span", { class: "conv-sub muted small" }, `${c.patient.accountNumber} · DOB ${fmtDate(c.patient.dateOfBirth)}`),
            h(
              "span",
              { class: "conv-pool small" },
              c.priority === "URGENT" ? h("span", { class: "pill pill-urgent" }, "Urgent") : null,
              c.waitingSince ? h("span", { class: "pill pill-waiting", title: `Waiting since ${new Date(c.waitingSince).toLocaleString()}` }, `Waiting ${fmtWait(c.waitingSince)}`) : null,
              h("span", { class: `assignee ${c.assignee ? "" : "muted"}` }, c.assignee ? `Assigned to ${c.assignee.id === state.me.id ? "you" : c.assignee.fullName}` : "Unassigned"),
            ),
            c.unreadCount ? h("span", { class: "badge", "aria-label": `${c.unreadCount} unread` }, c.unreadCount) : null,
          ),
        ),
      ),
    ),
  );
  if (focusedId) body.querySelector(`[data-conversation-id="${focusedId}"] button`)?.focus();
}

function showNewConversation(on) {
  const button = document.getElementById("new-conversation");
  if (button) button.hidden = !on;
}

function newConversation() {
  const input = h("input", { id: "patient-search", name: "q", type: "search", autocomplete: "off", placeholder: "Name, date of birth or account number", "aria-describedby": "patient-search-help" });
  const results = h("ul", { class: "patient-results", id: "patient-results", "aria-label": "Matching patients", "aria-live": "polite" });
  let timer = null;
  let dialog = null;
  const search = async () => {
    const query = input.value.trim();
    if (!query) return results.replaceChildren();
    try {
      const data = await api.request(Q.search, { practiceId: state.practiceId, query });
      if (input.value.trim() !== query) return;
      results.replaceChildren(
        ...(data.searchPatients.length
          ? data.searchPatients.map((p) =>
              h(
                "li",
                {},
                h(
                  "button",
                  { type: "button", class: "patient-result", dataset: { patientId: p.id }, onclick: () => start(p) },
                  h("span", { class: "patient-name" }, p.fullName),
                  p.preferredPronoun ? h("span", { class: "pronoun" }, `(${p.preferredPronoun})`) : null,
                  h("span", { class: "patient-facts muted small" }, `DOB ${fmtDate(p.dateOfBirth)} · Account ${p.accountNumber}`),
                ),
              ),
            )
          : [h("li", { class: "empty muted" }, "No patient matches.")]),
      );
    } catch (err) {
      results.replaceChildren(h("li", { class: "alert alert-error", role: "alert" }, err.message));
    }
  };
  const start = async (patient) => {
    try {
      const data = await api.request(M.start, { mailboxId: state.mailboxId, patientId: patient.id });
      dialog.close();
      state.convStatus = "ACTIVE";
      renderConversationsPane();
      await loadConversations();
      await openConversation(data.startConversation.id);
    } catch (err) {
      showError(err);
    }
  };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(search, 200);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      results.querySelector("button")?.focus();
    }
  });
  results.addEventListener("keydown", (event) => {
    const buttons = [...results.querySelectorAll("button")];
    const i = buttons.indexOf(document.activeElement);
    if (event.key === "ArrowDown" && i < buttons.length - 1) buttons[i + 1].focus();
    if (event.key === "ArrowUp") (i > 0 ? buttons[i - 1] : input).focus();
  });
  dialog = formDialog({
    title: `New conversation in ${currentMailbox().name}`,
    body: [
      h("label", { for: "patient-search" }, "Patient"),
      input,
      h("p", { id: "patient-search-help", class: "muted small" }, "Type the patient's name (any order), date of birth (YYYY-MM-DD or MM/DD/YYYY) or account number, then pick the patient."),
      results,
    ],
    submitLabel: "Search",
    async onSubmit() {
      await search();
      throw Object.assign(new Error("Pick the patient from the list."), { code: null });
    },
  });
  input.focus();
}

// ---- thread pane ---------------------------------------------------------------------------------------

function renderThreadPane() {
  const pane = document.getElementById("pane-thread");
  if (!state.conversationId) {
    pane.replaceChildren(h("div", { class: "placeholder" }, h("p", {}, !currentMailbox() ? "Messages appear here." : currentMailbox().isSubscribed ? "Select a conversation, or start one with + New Conversation." : "Select a conversation.")));
    thread = null;
    return;
  }
}

function threadHeader(c) {
  const archived = c.status === "ARCHIVED";
  return h(
    "div",
    { class: "thread-header-wrap" },
    h(
      "div",
      { class: "thread-header" },
      h("button", { type: "button", class: "back-btn", "aria-label": "Back to conversations", onclick: () => showPane("conversations") }, "‹"),
      h(
        "div",
        { class: "thread-patient" },
        h(
          "h2",
          { id: "thread-title" },
          h("a", { class: "chart-link", href: `/chart/${encodeURIComponent(c.patient.id)}`, title: `Open the chart summary of ${c.patient.fullName}` }, c.patient.fullName),
          c.patient.preferredPronoun ? h("span", { class: "pronoun" }, ` (${c.patient.preferredPronoun})`) : null,
        ),
        h("p", { class: "muted small" }, `DOB ${fmtDate(c.patient.dateOfBirth)} · Account ${c.patient.accountNumber} · ${c.mailbox.name}`),
      ),
      h("span", { class: `status-pill ${archived ? "status-archived" : "status-active"}` }, archived ? "Archived" : "Active"),
      archived
        ? h("button", { type: "button", class: "btn btn-small", id: "reactivate-conversation", onclick: () => conversationStatus(c, false) }, "Reactivate")
        : h("button", { type: "button", class: "btn btn-small", id: "archive-conversation", onclick: () => conversationStatus(c, true) }, "Archive"),
      threadMenu(c),
    ),
    h(
      "div",
      { class: "thread-pool", role: "group", "aria-label": "Assignment and priority" },
      h("span", { class: `thread-assignee small ${c.assignee ? "" : "muted"}`, id: "thread-assignee" }, c.assignee ? `Assigned to ${c.assignee.id === state.me.id ? "you" : c.assignee.fullName}` : "Unassigned"),
      c.assignee?.id === state.me.id ? null : h("button", { type: "button", class: "btn btn-small btn-primary", id: "claim-conversation", onclick: () => assign(c, state.me.id).catch(showError) }, "Claim"),
      c.priority === "URGENT" ? h("span", { class: "pill pill-urgent", id: "thread-priority" }, "Urgent") : null,
      c.waitingSince ? h("span", { class: "pill pill-waiting", id: "thread-waiting", title: `Waiting since ${new Date(c.waitingSince).toLocaleString()}` }, `Patient waiting ${fmtWait(c.waitingSince)}`) : null,
    ),
  );
}

// The thread header's ⋮ menu: assignment and priority.
function threadMenu(c) {
  const items = [
    ["Assign to…", () => assignDialog(c)],
    c.assignee ? ["Unassign", () => assignDialog(c, { unassign: true })] : null,
    c.priority === "URGENT" ? ["Mark as normal priority", () => setPriority(c, "NORMAL")] : ["Mark as urgent", () => setPriority(c, "URGENT")],
    ["Assignment history", () => historyDialog(c)],
  ].filter(Boolean);
  return kebabMenu(items, { label: "Conversation options", buttonId: "thread-menu-btn" });
}

// The answer carries the conversation's new row: the list and the header show it at once (its live event too).
async function assign(c, userId, reason = null) {
  const data = await api.request(M.assign, { id: c.id, userId, reason });
  const row = data.assignConversation;
  applyConversation({ ...row, mailbox: { id: state.mailboxId } });
  toast(row.assignee ? `Assigned to ${row.assignee.id === state.me.id ? "you" : row.assignee.fullName}.` : "Conversation unassigned.", "ok", 3000);
}

async function assignDialog(c, { unassign = false } = {}) {
  let people = [];
  if (!unassign) {
    try {
      people = (await api.request(Q.subscriberNames, { id: c.mailbox.id })).mailbox.subscribers;
    } catch (err) {
      showError(err);
      return;
    }
  }
  const select = unassign
    ? null
    : h("select", { id: "assign-to", name: "userId", required: true }, people.map((u) => h("option", { value: u.id, selected: u.id === (c.assignee?.id || state.me.id) }, u.id === state.me.id ? `${u.fullName} (you)` : u.fullName)));
  const reason = h("textarea", { id: "assign-reason", name: "reason", rows: 2, maxlength: 500, placeholder: "Optional: why (kept in the assignment history)" });
  formDialog({
    title: unassign ? `Unassign ${c.patient.fullName}'s conversation` : `Assign ${c.patient.fullName}'s conversation`,
    body: [
      select ? [h("label", { for: "assign-to" }, `Subscriber of ${c.mailbox.name}`), select] : h("p", {}, `It goes back to the pool of ${c.mailbox.name}.`),
      h("label", { for: "assign-reason" }, "Reason"),
      reason,
    ],
    submitLabel: unassign ? "Unassign" : "Assign",
    async onSubmit(form) {
      await assign(c, unassign ? null : form.get("userId"), form.get("reason") || null);
    },
  });
  (select || reason).focus();
}

async function setPriority(c, priority) {
  try {
    const row = (await api.request(M.priority, { id: c.id, priority })).setConversationPriority;
    applyConversation({ ...row, mailbox: { id: state.mailboxId } });
    toast(priority === "URGENT" ? "Marked as urgent." : "Back to normal priority.", "ok", 2500);
  } catch (err) {
    showError(err);
  }
}

function describeChange(x, who) {
  const self = x.assignee && x.assignee.id === x.changedBy.id;
  if (self) return x.previousAssignee ? `${x.changedBy.fullName} took it over from ${x.previousAssignee.fullName}` : `${x.changedBy.fullName} claimed it`;
  if (!x.assignee) return `${x.changedBy.fullName} unassigned ${who(x.previousAssignee)}`;
  return `${x.changedBy.fullName} assigned it to ${x.assignee.fullName}${x.previousAssignee ? ` (was ${x.previousAssignee.fullName})` : ""}`;
}

async function historyDialog(c) {
  let changes;
  try {
    changes = (await api.request(Q.history, { id: c.id })).conversation.assignmentHistory;
  } catch (err) {
    showError(err);
    return;
  }
  const who = (u) => (u ? u.fullName : "nobody");
  formDialog({
    title: "Assignment history",
    body: changes.length
      ? h(
          "ol",
          { class: "history", id: "assignment-history" },
          changes.map((x) =>
            h(
              "li",
              {},
              h("strong", {}, describeChange(x, who)),
              h("span", { class: "muted small" }, ` · ${fmtTime(x.at)}`),
              x.reason ? h("div", { class: "small" }, `“${x.reason}”`) : null,
            ),
          ),
        )
      : h("p", { class: "muted" }, "Nobody has claimed or been assigned this conversation yet."),
    submitLabel: "Close",
    cancelLabel: null,
    async onSubmit() {},
  });
}

async function conversationStatus(c, archive) {
  try {
    await api.request(archive ? M.archive : M.unarchive, { id: c.id });
    toast(archive ? `Conversation with ${c.patient.fullName} archived.` : `Conversation with ${c.patient.fullName} is active again.`, "ok", 3000);
    state.convStatus = archive ? "ARCHIVED" : "ACTIVE";
    renderConversationsPane();
    await loadConversations();
    await refreshThread();
  } catch (err) {
    showError(err);
  }
}

async function openConversation(id) {
  state.conversationId = id;
  state.pane = "thread";
  document.querySelector(".workbench").dataset.pane = "thread";
  document.querySelectorAll(".conversation").forEach((li) => {
    const on = li.dataset.conversationId === id;
    li.classList.toggle("selected", on);
    li.querySelector("button").setAttribute("aria-current", on ? "true" : "false");
  });
  thread = mountThread({
    container: document.getElementById("pane-thread"),
    load: async () => (await api.request(Q.thread, { id })).conversation,
    // The thread shows the answer; the list row and badges follow from the message's live event.
    send: async ({ body, files, clientMessageId }) => (await api.request(M.send, { id, body, attachments: files.length ? files : null, clientMessageId })).sendMessage,
    sendNote: async ({ body, files, clientMessageId }) => (await api.request(M.note, { id, body, attachments: files.length ? files : null, clientMessageId })).addInternalNote,
    quickReplies: loadQuickReplies,
    header: threadHeader,
    onRead: markRead,
    messageActions: [["Withdraw…", withdrawDialog, mayWithdraw]],
  });
  await refreshThread();
  thread?.focus();
}

async function refreshThread() {
  if (!thread) return;
  const c = await thread.refresh();
  if (c && c.unreadCount > 0) await markRead(c);
}

// The thread was opened or worked in: mark it read, and show the counts the answer gives.
let marking = null;
async function markRead(c) {
  if (marking === c.id) return;
  marking = c.id;
  try {
    const read = (await api.request(M.markRead, { id: c.id })).markConversationRead;
    const box = read.mailbox;
    if (state.unread.has(box.id)) state.unread.set(box.id, box.unreadCount);
    renderUnreadIcon();
    state.mailboxes = state.mailboxes.map((m) => (m.id === box.id ? { ...m, unreadCount: box.unreadCount } : m));
    renderMailboxList();
    applyConversation(read);
  } catch (err) {
    showError(err);
  } finally {
    marking = null;
  }
}

function showPane(name) {
  state.pane = name;
  document.querySelector(".workbench").dataset.pane = name;
}

// ---- the mailbox screen --------------------------------------------------------------------------------

function renderWorkbench() {
  setActiveNav("mailbox");
  const status = h(
    "select",
    { id: "mailbox-status", "aria-label": "Mailbox view" },
    h("option", { value: "ACTIVE" }, "Active mailboxes"),
    h("option", { value: "DEACTIVATED" }, "Deactivated mailboxes"),
  );
  status.value = state.status;
  status.addEventListener("change", () => {
    state.status = status.value;
    state.mailboxId = null;
    state.conversationId = null;
    thread = null;
    renderConversationsPane();
    renderThreadPane();
    loadMailboxes();
  });
  const subscribedOnly = toggle({
    id: "subscribed-only",
    label: "Show Subscribed Only",
    checked: state.subscribedOnly,
    onChange(on) {
      state.subscribedOnly = on;
      localStorage.setItem("pmm.subscribedOnly", on ? "1" : "0");
      loadMailboxes();
    },
  });
  main.replaceChildren(
    h(
      "div",
      { class: "workbench", dataset: { pane: state.pane } },
      h(
        "aside",
        { class: "pane pane-mailboxes", "aria-label": "Mailboxes" },
        h(
          "div",
          { class: "pane-head" },
          h("h1", {}, "Patient Messages Mailbox"),
        ),
        messageSearch(),
        h("div", { class: "filters" }, subscribedOnly, status),
        isMailboxAdmin() ? h("button", { type: "button", class: "btn btn-primary btn-block", id: "new-mailbox", onclick: newMailbox }, "+ New Mailbox") : null,
        h("p", { id: "mailbox-notice", class: "alert alert-error", role: "alert", hidden: true }),
        h("ul", { id: "mailbox-list", class: "mailbox-list", "aria-label": "Mailboxes" }, h("li", { class: "muted" }, "Loading…")),
        h("section", { id: "meaningful-use", class: "meaningful-use small", "aria-label": "Meaningful Use", hidden: true }),
      ),
      h("section", { class: "pane pane-conversations", id: "pane-conversations", "aria-label": "Conversations" }),
      h("section", { class: "pane pane-thread", id: "pane-thread", "aria-label": "Thread" }),
    ),
  );
  renderConversationsPane();
  renderThreadPane();
  loadMailboxes().then(() => {
    if (state.mailboxId) {
      loadConversations();
      if (state.conversationId) openConversation(state.conversationId);
    }
  });
}

// Results replace the conversation list; a result opens its thread beside them, the list comes back on Close.
function messageSearch() {
  return searchForm({
    api,
    practiceId: state.practiceId,
    getPane: () => document.getElementById("pane-conversations"),
    onOpen: (conversation) => {
      showPane("thread");
      openConversation(conversation.id);
    },
    onClose: () => {
      renderConversationsPane();
      if (state.mailboxId) loadConversations();
    },
  });
}

function route() {
  const hash = location.hash || "#/mailbox";
  const ctx = { api, state, main, practiceId: state.practiceId, me: state.me, isPracticeAdmin: isPracticeAdmin(), isMailboxAdmin: isMailboxAdmin() };
  thread = null;
  if (hash.startsWith("#/config")) setActiveNav("config");
  if (hash === "#/config/logins") renderLogins(ctx);
  else if (hash === "#/config/access") renderAccessControl(ctx);
  else if (hash === "#/config/settings") renderPracticeSettings(ctx);
  else if (hash === "#/config/quick-replies") renderQuickReplies(ctx);
  else renderWorkbench();
  refreshUnreadIcon();
}

async function boot() {
  try {
    const data = await api.request(Q.me);
    state.me = data.me;
    state.practices = data.practices;
  } catch (err) {
    main.replaceChildren(h("p", { class: "alert alert-error pad", role: "alert" }, err.message));
    return;
  }
  if (!state.practices.length) {
    main.replaceChildren(h("p", { class: "pad" }, "You are not a member of any practice yet. Ask a practice owner to add you."));
    return;
  }
  const saved = localStorage.getItem("pmm.practice");
  state.practiceId = state.practices.some((p) => p.id === saved) ? saved : state.practices[0].id;
  setupHeader();
  window.addEventListener("hashchange", route);
  startLive();
  route();
}

boot();
