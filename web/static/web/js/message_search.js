// Message search: the box above the mailbox list and its results in the conversations pane.
// Snippets arrive as plain-text segments; each becomes a text node (matching words inside <mark>), never HTML.
import { fmtTime, h, showError } from "./ui.js";

export const SEARCH_MESSAGES = `query SearchMessages($practiceId: ID!, $query: String!, $after: String) {
  searchMessages(practiceId: $practiceId, query: $query, first: 20, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id sentAt direction senderName }
      conversation { id mailbox { id name } patient { id fullName accountNumber } }
      snippet { text highlighted } } } }`;

export function snippetNodes(segments) {
  return segments.map((s) => (s.highlighted ? h("mark", {}, s.text) : document.createTextNode(s.text)));
}

// `getPane()` is the conversations pane the results fill; `onOpen(conversation)` opens a result's thread.
export function searchForm({ api, practiceId, getPane, onOpen, onClose }) {
  const input = h("input", { id: "message-search", name: "q", type: "search", autocomplete: "off", maxlength: 200, placeholder: "Search messages", "aria-label": "Search messages" });
  const form = h("form", { class: "message-search", role: "search", "aria-label": "Search messages" }, input, h("button", { type: "submit", class: "btn btn-small" }, "Search"));
  let request = 0;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = input.value.trim();
    if (!query) return;
    await run(query);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && input.value) {
      input.value = "";
      onClose();
    }
  });

  async function run(query) {
    const mine = ++request;
    const list = h("ul", { class: "conversation-list search-results", id: "search-results", "aria-label": `Messages matching ${query}` });
    const more = h("button", { type: "button", class: "btn btn-small btn-block", id: "search-more", hidden: true }, "More results");
    const status = h("p", { class: "muted small pad", id: "search-status", role: "status" }, "Searching…");
    getPane().replaceChildren(
      h(
        "div",
        { class: "pane-head" },
        h("h2", { id: "search-title", tabindex: "-1" }, "Search results"),
        h("button", { type: "button", class: "btn btn-ghost btn-small", id: "search-close", onclick: () => { input.value = ""; onClose(); } }, "Close"),
      ),
      h("div", { class: "pane-body" }, status, list, more),
    );
    let after = null;
    let shown = 0;
    const page = async () => {
      let data;
      try {
        data = (await api.request(SEARCH_MESSAGES, { practiceId, query, after })).searchMessages;
      } catch (err) {
        if (mine !== request) return;
        status.className = "alert alert-error";
        status.textContent = err.message;
        showError(err);
        return;
      }
      if (mine !== request) return; // a newer search replaced this one
      for (const edge of data.edges) list.append(resultItem(edge, onOpen));
      shown += data.edges.length;
      status.textContent = shown ? `${shown}${data.pageInfo.hasNextPage ? "+" : ""} message${shown === 1 ? "" : "s"} matching “${query}” in your subscribed mailboxes` : `No message in your subscribed mailboxes matches “${query}”.`;
      after = data.pageInfo.endCursor;
      more.hidden = !data.pageInfo.hasNextPage;
    };
    more.onclick = page;
    await page();
    document.getElementById("search-title")?.focus();
  }

  return form;
}

function resultItem(edge, onOpen) {
  const c = edge.conversation;
  return h(
    "li",
    { class: "conversation search-result", dataset: { conversationId: c.id, messageId: edge.node.id } },
    h(
      "button",
      { type: "button", class: "conversation-select", onclick: () => onOpen(c) },
      h("span", { class: "conv-top" }, h("span", { class: "conv-name" }, c.patient.fullName), h("span", { class: "muted small" }, fmtTime(edge.node.sentAt))),
      h("span", { class: "conv-sub muted small" }, `${c.mailbox.name} · ${edge.node.senderName}`),
      h("span", { class: "snippet" }, snippetNodes(edge.snippet)),
    ),
  );
}
