// The chart-summary widget: every conversation with one patient, readable and answerable without a subscription.
import { createClient } from "./gql.js";
import { createLive } from "./live.js";
import { MESSAGE_FIELDS, mountThread, THREAD_FIELDS } from "./thread.js";
import { fmtDate, fmtTime, h, showError } from "./ui.js";

const api = createClient();
const live = createLive();
const root = document.getElementById("chart");
const patientId = root.dataset.patientId;

const Q = {
  patient: `query Chart($id: ID!) { patient(id: $id) { id fullName preferredPronoun dateOfBirth accountNumber
    conversations { id status lastMessageAt unreadCount mailbox { id name status practice { id } } } } }`,
  practices: `{ practices { id } }`,
  find: `query Find($practiceId: ID!, $q: String!) { searchPatients(practiceId: $practiceId, query: $q, first: 50) { id } }`,
  mailboxes: `query Boxes($practiceId: ID!) { mailboxes(practiceId: $practiceId) { id name } }`,
  thread: `query Thread($id: ID!) { conversation(id: $id, via: CHART_SUMMARY) { ${THREAD_FIELDS} } }`,
  // What the conversation list and the open thread show, so an event updates them without a request.
  events: `subscription ChartEvents($conversationId: ID!, $after: String) {
    conversationEvents(conversationId: $conversationId, after: $after, via: CHART_SUMMARY) { cursor kind occurredAt conversationId
      conversation { id status lastMessageAt unreadCount mailbox { id name status } }
      message { ${MESSAGE_FIELDS} clientMessageId } } }`,
};
const M = {
  send: `mutation($id: ID!, $body: String, $attachments: [Upload!], $clientMessageId: String) {
    sendMessage(conversationId: $id, body: $body, attachments: $attachments, clientMessageId: $clientMessageId, via: CHART_SUMMARY) { ${MESSAGE_FIELDS} clientMessageId } }`,
  note: `mutation($id: ID!, $body: String, $attachments: [Upload!], $clientMessageId: String) {
    addInternalNote(conversationId: $id, body: $body, attachments: $attachments, clientMessageId: $clientMessageId, via: CHART_SUMMARY) { ${MESSAGE_FIELDS} clientMessageId } }`,
  start: `mutation($mailboxId: ID!, $patientId: ID!) { startConversation(mailboxId: $mailboxId, patientId: $patientId, via: CHART_SUMMARY) { id } }`,
  read: `mutation($id: ID!) { markConversationRead(conversationId: $id, via: CHART_SUMMARY) { id status lastMessageAt unreadCount } }`,
};

let patient = null;
let selected = null;
let thread = null;
let stopLive = () => {};

async function practiceOfPatient() {
  const known = patient.conversations[0]?.mailbox.practice.id;
  if (known) return known;
  const { practices } = await api.request(Q.practices);
  for (const p of practices) {
    const found = await api.request(Q.find, { practiceId: p.id, q: patient.accountNumber });
    if (found.searchPatients.some((x) => x.id === patient.id)) return p.id;
  }
  return null;
}

async function loadPatient() {
  try {
    patient = (await api.request(Q.patient, { id: patientId })).patient;
  } catch (err) {
    root.replaceChildren(h("p", { class: "alert alert-error pad", role: "alert" }, err.message));
    return false;
  }
  renderList();
  return true;
}

function renderList() {
  const list = document.getElementById("chart-conversations");
  list.replaceChildren(
    ...(patient.conversations.length
      ? patient.conversations.map((c) =>
          h(
            "li",
            { class: `conversation ${c.id === selected ? "selected" : ""} ${c.mailbox.status === "DEACTIVATED" ? "deactivated" : ""}`, dataset: { conversationId: c.id } },
            h(
              "button",
              { type: "button", class: "conversation-select", "aria-current": c.id === selected ? "true" : null, onclick: () => open(c.id) },
              h("span", { class: "conv-top" }, h("span", { class: "conv-name" }, c.mailbox.name), h("span", { class: "muted small" }, fmtTime(c.lastMessageAt))),
              h("span", { class: "conv-sub muted small" }, c.status === "ARCHIVED" ? "Archived" : "Active", c.mailbox.status === "DEACTIVATED" ? " · mailbox deactivated" : ""),
              c.unreadCount ? h("span", { class: "badge" }, c.unreadCount) : null,
            ),
          ),
        )
      : [h("li", { class: "empty muted" }, "No conversations with this patient yet.")]),
  );
}

async function open(id) {
  selected = id;
  renderList();
  stopLive();
  const markRead = async () => {
    try {
      applyConversation((await api.request(M.read, { id })).markConversationRead);
    } catch (err) {
      showError(err);
    }
  };
  thread = mountThread({
    container: document.getElementById("chart-thread"),
    load: async () => (await api.request(Q.thread, { id })).conversation,
    send: async ({ body, files, clientMessageId }) => (await api.request(M.send, { id, body, attachments: files.length ? files : null, clientMessageId })).sendMessage,
    sendNote: async ({ body, files, clientMessageId }) => (await api.request(M.note, { id, body, attachments: files.length ? files : null, clientMessageId })).addInternalNote,
    header: (c) => h("div", { class: "thread-header" }, h("div", { class: "thread-patient" }, h("h2", {}, c.mailbox.name), h("p", { class: "muted small" }, c.status === "ARCHIVED" ? "Archived conversation" : "Active conversation", " · viewed from the chart summary"))),
    disabledReason: (c) => (c.mailbox.status === "DEACTIVATED" ? "This mailbox is deactivated: its history stays readable, but no new messages can be sent." : null),
    onRead: markRead,
  });
  const mounted = thread;
  const refresh = async () => {
    const c = await mounted.refresh();
    if (c && c.unreadCount > 0) await markRead();
    await loadPatient();
  };
  // Subscribed before the first load, so nothing happens unseen in between.
  stopLive = live.watch({
    query: Q.events,
    variables: { conversationId: id },
    onEvent(event) {
      if (event?.conversation) applyConversation(event.conversation);
      if (event?.message && thread === mounted) {
        if (event.kind === "MESSAGE_RETRACTED") mounted.replaceMessage(event.message);
        else mounted.addMessage(event.message);
      }
    },
    onResync: refresh, // the server no longer has the events we missed
    poll: refresh,
  });
  await refresh();
}

// A conversation's new state (from its live event or a mutation's answer): its row and the open thread.
function applyConversation(conversation) {
  if (!patient) return;
  const old = patient.conversations.find((c) => c.id === conversation.id);
  if (!old) return;
  const row = { ...old, ...conversation, mailbox: { ...old.mailbox, ...(conversation.mailbox || {}) } };
  const activity = (c) => Date.parse(c.lastMessageAt || 0) || 0;
  const others = patient.conversations.filter((c) => c.id !== conversation.id);
  // Most recent activity first, as the server lists them: a new message makes its conversation the first.
  patient.conversations = activity(row) > activity(old) ? [row, ...others] : patient.conversations.map((c) => (c.id === row.id ? row : c));
  renderList();
  if (thread && thread.conversation?.id === conversation.id) {
    const { status, unreadCount, lastMessageAt } = conversation;
    thread.update({ status, unreadCount, lastMessageAt, ...(conversation.mailbox ? { mailbox: conversation.mailbox } : {}) });
  }
}

async function startIn(mailboxId) {
  try {
    const data = await api.request(M.start, { mailboxId, patientId: patient.id });
    await loadPatient();
    await open(data.startConversation.id);
  } catch (err) {
    showError(err);
  }
}

async function boot() {
  root.replaceChildren(
    h(
      "div",
      { class: "chart-layout" },
      h(
        "aside",
        { class: "pane", "aria-label": "Patient conversations" },
        h("div", { class: "pane-head chart-patient", id: "chart-patient" }),
        h("ul", { class: "conversation-list", id: "chart-conversations", "aria-label": "Conversations" }),
        h("div", { class: "pad", id: "chart-start" }),
      ),
      h("section", { class: "pane pane-thread", id: "chart-thread", "aria-label": "Thread" }, h("div", { class: "placeholder" }, h("p", {}, "Select a conversation."))),
    ),
  );
  if (!(await loadPatient())) return;
  document.getElementById("chart-patient").replaceChildren(
    h("div", {}, h("p", { class: "muted small" }, "Chart summary · Patient messages"), h("h1", {}, patient.fullName, patient.preferredPronoun ? h("span", { class: "pronoun" }, ` (${patient.preferredPronoun})`) : null), h("p", { class: "muted small" }, `DOB ${fmtDate(patient.dateOfBirth)} · Account ${patient.accountNumber}`)),
  );
  try {
    const practiceId = await practiceOfPatient();
    if (practiceId) {
      const { mailboxes } = await api.request(Q.mailboxes, { practiceId });
      const select = h("select", { id: "chart-mailbox", "aria-label": "Mailbox for a new conversation" }, mailboxes.map((m) => h("option", { value: m.id }, m.name)));
      if (mailboxes.length)
        document.getElementById("chart-start").replaceChildren(
          h("form", { class: "inline-form", onsubmit: (e) => { e.preventDefault(); startIn(select.value); } }, select, h("button", { type: "submit", class: "btn btn-small" }, "+ New Conversation")),
        );
    }
  } catch (err) {
    document.getElementById("chart-start").replaceChildren(h("p", { class: "muted small" }, err.message));
  }
  if (patient.conversations.length) open(patient.conversations[0].id);
}

boot();
