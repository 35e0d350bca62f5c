// A minimal patient portal: sign in with a token, read your threads, write to an active mailbox, live replies.
import { createClient } from "./gql.js";
import { createLive } from "./live.js";
import { MESSAGE_FIELDS, mountThread } from "./thread.js";
import { fmtTime, h, showError } from "./ui.js";

const KEY = "pmm.portalToken";
const token = () => sessionStorage.getItem(KEY);
const api = createClient({ auth: token });
const root = document.getElementById("portal");
const signOut = document.getElementById("portal-signout");

const Q = {
  conversations: `{ portalConversations { id status lastMessageAt mailbox { id name status } patient { id fullName }
    messages(last: 50) { totalCount edges { node { ${MESSAGE_FIELDS} } } } } }`,
  mailboxes: `{ portalMailboxes { id name } }`,
  // What the conversation list and the thread show, so a reply appears without a request.
  events: `subscription PortalEvents($after: String) { portalEvents(after: $after) { cursor kind occurredAt conversationId
    conversation { id status lastMessageAt mailbox { id name status } patient { id fullName } }
    message { ${MESSAGE_FIELDS} clientMessageId } } }`,
};
const M = {
  send: `mutation($mailboxId: ID!, $body: String, $attachments: [Upload!], $clientMessageId: String) {
    sendPortalMessage(mailboxId: $mailboxId, body: $body, attachments: $attachments, clientMessageId: $clientMessageId) { ${MESSAGE_FIELDS} clientMessageId conversationId } }`,
};

let conversations = [];
let mailboxes = [];
let selectedMailbox = null; // threads are one per mailbox for a patient
let thread = null;

function loginForm(message) {
  signOut.hidden = true;
  const input = h("textarea", { id: "portal-token", name: "token", rows: 3, required: true, autocomplete: "off", spellcheck: "false", placeholder: "pmm_…" });
  root.replaceChildren(
    h(
      "form",
      {
        class: "login-card",
        onsubmit: async (e) => {
          e.preventDefault();
          sessionStorage.setItem(KEY, input.value.trim());
          boot();
        },
      },
      h("h1", {}, "Sign in to your messages"),
      h("p", { class: "muted" }, "Paste the access token your practice gave you."),
      message ? h("p", { class: "alert alert-error", role: "alert" }, message) : null,
      h("label", { for: "portal-token" }, "Access token"),
      input,
      h("button", { type: "submit", class: "btn btn-primary btn-block" }, "Sign in"),
    ),
  );
  input.focus();
}

async function load() {
  const [c, m] = await Promise.all([api.request(Q.conversations), api.request(Q.mailboxes)]);
  conversations = c.portalConversations;
  mailboxes = m.portalMailboxes;
}

function renderSide() {
  const list = document.getElementById("portal-conversations");
  list.replaceChildren(
    ...(conversations.length
      ? conversations.map((c) => {
          const last = c.messages.edges.at(-1)?.node;
          return h(
            "li",
            { class: `conversation ${c.mailbox.id === selectedMailbox ? "selected" : ""}`, dataset: { mailboxId: c.mailbox.id } },
            h(
              "button",
              { type: "button", class: "conversation-select", "aria-current": c.mailbox.id === selectedMailbox ? "true" : null, onclick: () => open(c.mailbox.id) },
              h("span", { class: "conv-top" }, h("span", { class: "conv-name" }, c.mailbox.name), h("span", { class: "muted small" }, fmtTime(c.lastMessageAt))),
              h("span", { class: "conv-sub muted small" }, last ? (last.retracted ? "Message withdrawn" : last.body.slice(0, 60) || "Attachment") : "No messages yet"),
            ),
          );
        })
      : [h("li", { class: "empty muted" }, "No messages yet.")]),
  );
  const select = document.getElementById("portal-mailbox");
  const current = select.value;
  select.replaceChildren(...mailboxes.map((m) => h("option", { value: m.id, selected: m.id === current }, m.name)));
  document.getElementById("portal-new").hidden = !mailboxes.length;
}

function open(mailboxId) {
  selectedMailbox = mailboxId;
  renderSide();
  const mailbox = mailboxes.find((m) => m.id === mailboxId);
  thread = mountThread({
    container: document.getElementById("portal-thread"),
    perspective: "patient",
    load: async () => {
      const found = conversations.find((c) => c.mailbox.id === mailboxId);
      return found || { id: null, status: "ACTIVE", mailbox: mailbox || { id: mailboxId, name: "", status: "ACTIVE" }, messages: { edges: [] } };
    },
    send: async ({ body, files, clientMessageId }) => {
      const sent = (await api.request(M.send, { mailboxId, body, attachments: files.length ? files : null, clientMessageId })).sendPortalMessage;
      if (conversations.some((c) => c.id === sent.conversationId)) {
        applyEvent({ conversation: { id: sent.conversationId, lastMessageAt: sent.sentAt }, message: sent });
        return sent;
      }
      // The first message to this mailbox started a conversation that this page has not seen yet.
      await load();
      renderSide();
      return null;
    },
    header: (c) => h("div", { class: "thread-header" }, h("div", { class: "thread-patient" }, h("h2", {}, c.mailbox.name), h("p", { class: "muted small" }, "Your conversation with the practice"))),
    disabledReason: (c) => (mailboxes.some((m) => m.id === c.mailbox.id) ? null : "This mailbox no longer accepts messages."),
  });
  thread.refresh();
}

// A live event (or a send's answer): the conversation's new state and its new message, in the list and thread.
function applyEvent(event) {
  const fields = event?.conversation;
  if (!fields) return;
  const old = conversations.find((c) => c.id === fields.id);
  if (!old && !fields.mailbox) return;
  const base = old || { messages: { totalCount: 0, edges: [] } };
  let messages = base.messages;
  const message = event.message;
  const withdrawn = event.kind === "MESSAGE_RETRACTED";
  if (message && withdrawn) {
    messages = { ...messages, edges: messages.edges.map((e) => (e.node.id === message.id ? { node: { ...e.node, ...message } } : e)) };
  } else if (message && !messages.edges.some((e) => e.node.id === message.id || e.node.sequence === message.sequence)) {
    const edges = [...messages.edges, { node: message }].sort((a, b) => a.node.sequence - b.node.sequence);
    messages = { ...messages, totalCount: (messages.totalCount || 0) + 1, edges };
  }
  const row = { ...base, ...fields, mailbox: { ...(base.mailbox || {}), ...(fields.mailbox || {}) }, messages };
  const others = conversations.filter((c) => c.id !== row.id);
  const activity = (c) => Date.parse(c.lastMessageAt || 0) || 0;
  // Most recent activity first, as the server lists them.
  conversations = !old || activity(row) > activity(old) ? [row, ...others] : conversations.map((c) => (c.id === row.id ? row : c));
  renderSide();
  if (!thread) open(conversations[0].mailbox.id); // as on loading: the first thread opens by itself
  else if (selectedMailbox === row.mailbox.id) {
    if (thread.conversation?.id !== row.id) thread.show(row); // the mailbox's first message: its thread now exists
    else {
      thread.update({ status: row.status, lastMessageAt: row.lastMessageAt });
      if (message && withdrawn) thread.replaceMessage(message);
      else if (message) thread.addMessage(message);
    }
  }
}

async function refresh() {
  try {
    await load();
  } catch (err) {
    showError(err);
    return;
  }
  renderSide();
  if (thread) thread.refresh();
  else if (conversations.length) open(conversations[0].mailbox.id);
}

async function boot() {
  if (!token()) return loginForm();
  try {
    await load();
  } catch (err) {
    if (err.code === "UNAUTHENTICATED" || err.code === "FORBIDDEN") {
      sessionStorage.removeItem(KEY);
      return loginForm(err.message);
    }
    root.replaceChildren(h("p", { class: "alert alert-error pad", role: "alert" }, err.message));
    return;
  }
  signOut.hidden = false;
  signOut.onclick = () => {
    sessionStorage.removeItem(KEY);
    location.reload();
  };
  const select = h("select", { id: "portal-mailbox", "aria-label": "Write to" });
  root.replaceChildren(
    h(
      "div",
      { class: "chart-layout" },
      h(
        "aside",
        { class: "pane", "aria-label": "Your conversations" },
        h("div", { class: "pane-head" }, h("h1", {}, conversations[0]?.patient.fullName ? `Messages for ${conversations[0].patient.fullName}` : "Your messages")),
        h("ul", { class: "conversation-list", id: "portal-conversations", "aria-label": "Conversations" }),
        h("form", { class: "inline-form pad", id: "portal-new", onsubmit: (e) => { e.preventDefault(); open(select.value); } }, h("label", { for: "portal-mailbox" }, "Write to"), select, h("button", { type: "submit", class: "btn btn-small" }, "New message")),
      ),
      h("section", { class: "pane pane-thread", id: "portal-thread", "aria-label": "Thread" }, h("div", { class: "placeholder" }, h("p", {}, "Select a conversation or write a new message."))),
    ),
  );
  renderSide();
  if (conversations.length) open(conversations[0].mailbox.id);
  const live = createLive({ auth: token });
  live.watch({ query: Q.events, variables: {}, onEvent: applyEvent, onResync: refresh, poll: refresh });
}

boot();
