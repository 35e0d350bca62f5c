// The chart-summary widget: every conversation with one patient, readable and answerable without a subscription.
import { createClient } from "./gql.js";
import { createLive } from "./live.js";
import { mountThread, THREAD_FIELDS } from "./thread.js";
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
  events: `subscription ChartEvents($conversationId: ID!, $after: String) {
    conversationEvents(conversationId: $conversationId, after: $after, via: CHART_SUMMARY) { cursor kind } }`,
};
const M = {
  send: `mutation($id: ID!, $body: String, $attachments: [Upload!], $clientMessageId: String) {
    sendMessage(conversationId: $id, body: $body, attachments: $attachments, clientMessageId: $clientMessageId, via: CHART_SUMMARY) { id } }`,
  start: `mutation($mailboxId: ID!, $patientId: ID!) { startConversation(mailboxId: $mailboxId, patientId: $patientId, via: CHART_SUMMARY) { id } }`,
  read: `mutation($id: ID!) { markConversationRead(conversationId: $id, via: CHART_SUMMARY) { id } }`,
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
  thread = mountThread({
    container: document.getElementById("chart-thread"),
    load: async () => (await api.request(Q.thread, { id })).conversation,
    send: async ({ body, files, clientMessageId }) => {
      await api.request(M.send, { id, body, attachments: files.length ? files : null, clientMessageId });
    },
    header: (c) => h("div", { class: "thread-header" }, h("div", { class: "thread-patient" }, h("h2", {}, c.mailbox.name), h("p", { class: "muted small" }, c.status === "ARCHIVED" ? "Archived conversation" : "Active conversation", " · viewed from the chart summary"))),
    disabledReason: (c) => (c.mailbox.status === "DEACTIVATED" ? "This mailbox is deactivated: its history stays readable, but no new messages can be sent." : null),
  });
  const refresh = async () => {
    const c = await thread.refresh();
    if (c && c.unreadCount > 0) {
      await api.request(M.read, { id }).catch(showError);
    }
    await loadPatient();
  };
  stopLive = live.watch({ query: Q.events, variables: { conversationId: id }, onEvent: refresh, poll: refresh });
  await refresh();
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
