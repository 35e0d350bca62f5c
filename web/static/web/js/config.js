// Config screens: Logins → Mailbox Access, Access Control, Practice Settings.
import { formDialog, h, showError, toast, toggle } from "./ui.js";

const WORKBENCH_KEY = "ui.pat_messages_mailbox.enable";
const PORTAL_KEY = "patient_portal.use_mailbox_messaging";
const PERMISSIONS = ["MAILBOX_ADMIN_PERMISSION"];

const Q = {
  users: `query Users($practiceId: ID!) { practiceUsers(practiceId: $practiceId) { user { id username fullName } role isClinician permissions } }`,
  access: `query Access($userId: ID!) { userMailboxAccess(userId: $userId) { practice { id name } allMailboxes mailboxes { mailbox { id name status } subscribed } } }`,
  setAccess: `mutation SetAccess($userId: ID!, $practiceId: ID!, $all: Boolean, $ids: [ID!]) {
    setUserMailboxAccess(userId: $userId, practiceId: $practiceId, allMailboxes: $all, mailboxIds: $ids) { practice { id } } }`,
  grant: `mutation($practiceId: ID!, $userId: ID!, $permission: PracticePermission!) { grantPermission(practiceId: $practiceId, userId: $userId, permission: $permission) { permissions } }`,
  revoke: `mutation($practiceId: ID!, $userId: ID!, $permission: PracticePermission!) { revokePermission(practiceId: $practiceId, userId: $userId, permission: $permission) { permissions } }`,
  settings: `query Settings($practiceId: ID!) { practiceSettings(practiceId: $practiceId) { key value } }`,
  setSetting: `mutation($practiceId: ID!, $key: String!, $value: String!) { setPracticeSetting(practiceId: $practiceId, key: $key, value: $value) { key value } }`,
};

const roleLabel = (role) => ({ OWNER: "Owner", ADMINISTRATOR: "Administrator", STAFF: "Staff" })[role] || role;

function page(ctx, crumbs, title, ...content) {
  ctx.main.replaceChildren(
    h("div", { class: "config" }, h("p", { class: "crumbs muted small" }, crumbs), h("h1", {}, title), ...content),
  );
}

// ---- Logins → Mailbox Access ---------------------------------------------------------------------------

export async function renderLogins(ctx) {
  const { api, practiceId } = ctx;
  const detail = h("section", { class: "card login-detail", "aria-label": "User details" }, h("p", { class: "muted" }, "Select a user on the left."));
  const list = h("ul", { class: "user-list", "aria-label": "Users" });
  page(ctx, "Config › Practice › Logins", "Logins", h("div", { class: "split" }, h("nav", { class: "card" }, list), detail));
  let users;
  try {
    users = (await api.request(Q.users, { practiceId })).practiceUsers;
  } catch (err) {
    list.replaceChildren(h("li", { class: "alert alert-error", role: "alert" }, err.message));
    return;
  }
  const select = (m) => {
    list.querySelectorAll("li").forEach((li) => li.classList.toggle("selected", li.dataset.userId === m.user.id));
    detail.replaceChildren(
      h("h2", {}, m.user.fullName),
      h("p", { class: "muted" }, `${m.user.username} · ${roleLabel(m.role)}${m.isClinician ? " · Clinician" : ""}`),
      h(
        "div",
        { class: "row-between" },
        h("strong", {}, "Mailbox Access"),
        h("button", { type: "button", class: "btn btn-small", id: "configure-mailbox-access", onclick: () => mailboxAccess(ctx, m, detail) }, "Configure"),
      ),
      h("div", { id: "mailbox-access" }),
    );
  };
  list.replaceChildren(
    ...users.map((m) =>
      h("li", { dataset: { userId: m.user.id } }, h("button", { type: "button", class: "user-select", onclick: () => select(m) }, h("span", {}, m.user.fullName), h("span", { class: "muted small" }, roleLabel(m.role)))),
    ),
  );
}

async function mailboxAccess(ctx, membership, detail) {
  const box = detail.querySelector("#mailbox-access");
  const userId = membership.user.id;
  let rows;
  try {
    rows = (await ctx.api.request(Q.access, { userId })).userMailboxAccess;
  } catch (err) {
    box.replaceChildren(h("p", { class: "alert alert-error", role: "alert" }, err.message));
    return;
  }
  if (!rows.length) {
    box.replaceChildren(h("p", { class: "muted" }, "You administer mailboxes in none of this user's practices."));
    return;
  }
  const save = async (variables) => {
    try {
      await ctx.api.request(Q.setAccess, { userId, ...variables });
      toast(`Mailbox access of ${membership.user.fullName} saved.`, "ok", 2500);
    } catch (err) {
      showError(err);
    }
    mailboxAccess(ctx, membership, detail);
  };
  box.replaceChildren(
    h("p", { class: "muted small" }, `Practices ${membership.user.fullName} belongs to. The practice toggle subscribes to all of its mailboxes; open a practice to choose mailboxes one by one.`),
    h(
      "ul",
      { class: "access-list" },
      rows.map((row, i) => {
        const subscribed = new Set(row.mailboxes.filter((e) => e.subscribed).map((e) => e.mailbox.id));
        const details = h(
          "details",
          { class: "access-practice", open: rows.length === 1 },
          h("summary", {}, row.practice.name, h("span", { class: "muted small" }, ` · ${subscribed.size} of ${row.mailboxes.length} mailboxes`)),
          h(
            "ul",
            { class: "toggle-list" },
            row.mailboxes.length
              ? row.mailboxes.map((e, j) =>
                  h(
                    "li",
                    { class: e.mailbox.status === "DEACTIVATED" ? "deactivated" : "" },
                    toggle({
                      id: `access-${i}-${j}`,
                      label: e.mailbox.name + (e.mailbox.status === "DEACTIVATED" ? " (deactivated)" : ""),
                      checked: e.subscribed,
                      onChange(on) {
                        on ? subscribed.add(e.mailbox.id) : subscribed.delete(e.mailbox.id);
                        save({ practiceId: row.practice.id, ids: [...subscribed] });
                      },
                    }),
                  ),
                )
              : h("li", { class: "muted" }, "This practice has no mailboxes yet."),
          ),
        );
        return h(
          "li",
          {},
          h("div", { class: "row-between" }, h("strong", {}, row.practice.name), toggle({ id: `access-all-${i}`, label: "All mailboxes", checked: row.allMailboxes, onChange: (on) => save({ practiceId: row.practice.id, all: on }) })),
          details,
        );
      }),
    ),
  );
}

// ---- Access Control ------------------------------------------------------------------------------------

export async function renderAccessControl(ctx) {
  const { api, practiceId } = ctx;
  const body = h("div", { class: "card" }, h("p", { class: "muted" }, "Loading…"));
  const note = ctx.isPracticeAdmin ? null : h("p", { class: "alert alert-info" }, "Only practice owners and administrators can grant or revoke permissions.");
  page(ctx, "Config › System › User Management › Access Control", "Access Control", note, body);
  let users;
  try {
    users = (await api.request(Q.users, { practiceId })).practiceUsers;
  } catch (err) {
    body.replaceChildren(h("p", { class: "alert alert-error", role: "alert" }, err.message));
    return;
  }
  const change = async (m, permission, grant) => {
    try {
      await api.request(grant ? Q.grant : Q.revoke, { practiceId, userId: m.user.id, permission });
      toast(`${permission} ${grant ? "granted to" : "revoked from"} ${m.user.fullName}.`, "ok", 3000);
      renderAccessControl(ctx);
    } catch (err) {
      showError(err);
    }
  };
  body.replaceChildren(
    h(
      "ul",
      { class: "acl-list", "aria-label": "Users of the practice" },
      users.map((m, i) => {
        const missing = PERMISSIONS.filter((p) => !m.permissions.includes(p));
        const select = h("select", { id: `grant-${i}`, "aria-label": `Permission to grant to ${m.user.fullName}` }, h("option", { value: "" }, "Add permission…"), missing.map((p) => h("option", { value: p }, p)));
        return h(
          "li",
          { class: "acl-row", dataset: { username: m.user.username } },
          h("div", {}, h("strong", {}, m.user.fullName), h("div", { class: "muted small" }, `${m.user.username} · ${roleLabel(m.role)}${m.isClinician ? " · Clinician" : ""}`)),
          h(
            "div",
            { class: "chips" },
            m.permissions.length ? m.permissions.map((p) => h("span", { class: "chip" }, p, ctx.isPracticeAdmin ? h("button", { type: "button", class: "chip-x", "aria-label": `Revoke ${p} from ${m.user.fullName}`, onclick: () => change(m, p, false) }, "×") : null)) : h("span", { class: "muted small" }, "No permissions"),
          ),
          ctx.isPracticeAdmin && missing.length
            ? h("form", { class: "inline-form", onsubmit: (e) => { e.preventDefault(); if (select.value) change(m, select.value, true); } }, select, h("button", { type: "submit", class: "btn btn-small" }, "Save"))
            : h("span"),
        );
      }),
    ),
  );
}

// ---- Practice Settings ---------------------------------------------------------------------------------

export async function renderPracticeSettings(ctx) {
  const { api, practiceId } = ctx;
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  page(ctx, "Config › Practice › Settings › Advanced", "Practice Settings", body);
  let settings;
  try {
    settings = (await api.request(Q.settings, { practiceId })).practiceSettings;
  } catch (err) {
    body.replaceChildren(h("p", { class: "alert alert-error", role: "alert" }, err.message));
    return;
  }
  const value = (key) => settings.find((s) => s.key === key)?.value || "F";
  const set = async (key, val) => {
    try {
      await api.request(Q.setSetting, { practiceId, key, value: val });
      toast(`${key} = ${val} saved.`, "ok", 2500);
    } catch (err) {
      showError(err);
    }
    renderPracticeSettings(ctx);
  };
  const keyInput = h("input", { id: "setting-key", name: "key", required: true, autocomplete: "off", placeholder: "e.g. ui.pat_messages_mailbox.enable", list: "known-keys" });
  const valueInput = h("input", { id: "setting-value", name: "value", required: true, autocomplete: "off", placeholder: "T or F" });
  body.replaceChildren(
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Patient Messages Mailbox"),
      h("ul", { class: "toggle-list" },
        h("li", {}, toggle({ id: "switch-workbench", label: "Mailbox workbench for staff (ui.pat_messages_mailbox.enable)", checked: value(WORKBENCH_KEY) === "T", onChange: (on) => set(WORKBENCH_KEY, on ? "T" : "F") })),
        h("li", {}, toggle({ id: "switch-portal", label: "Patients message mailboxes from the portal (patient_portal.use_mailbox_messaging)", checked: value(PORTAL_KEY) === "T", onChange: (on) => set(PORTAL_KEY, on ? "T" : "F") })),
      ),
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Advanced settings"),
      h("table", { class: "settings-table" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, "Value"))), h("tbody", {}, settings.map((s) => h("tr", {}, h("td", {}, h("code", {}, s.key)), h("td", {}, s.value))))),
      h(
        "form",
        { class: "inline-form", onsubmit: (e) => { e.preventDefault(); set(keyInput.value.trim(), valueInput.value.trim()); } },
        h("label", { for: "setting-key" }, "Key"), keyInput,
        h("label", { for: "setting-value" }, "Value"), valueInput,
        h("button", { type: "submit", class: "btn btn-primary" }, "Save"),
        h("datalist", { id: "known-keys" }, h("option", { value: WORKBENCH_KEY }), h("option", { value: PORTAL_KEY })),
      ),
    ),
  );
}

// ---- Quick Replies -----------------------------------------------------------------------------------------

const QR = {
  list: `query QuickReplies($practiceId: ID!) { quickReplies(practiceId: $practiceId) { id title body } }`,
  create: `mutation($practiceId: ID!, $title: String!, $body: String!) { createQuickReply(practiceId: $practiceId, title: $title, body: $body) { id } }`,
  update: `mutation($id: ID!, $title: String!, $body: String!) { updateQuickReply(quickReplyId: $id, title: $title, body: $body) { id } }`,
  remove: `mutation($id: ID!) { deleteQuickReply(quickReplyId: $id) }`,
};

let quickRepliesListener = null;

export async function renderQuickReplies(ctx) {
  const { api, practiceId, isMailboxAdmin } = ctx;
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  page(ctx, "Config › Practice › Quick Replies", "Quick Replies", body);
  // A colleague's change arrives as a live event; the page shows the practice's list again.
  if (quickRepliesListener) window.removeEventListener("pmm:quick-replies-changed", quickRepliesListener);
  quickRepliesListener = () => location.hash === "#/config/quick-replies" && !document.querySelector("dialog[open]") && renderQuickReplies(ctx);
  window.addEventListener("pmm:quick-replies-changed", quickRepliesListener);
  let replies;
  try {
    replies = (await api.request(QR.list, { practiceId })).quickReplies;
  } catch (err) {
    body.replaceChildren(h("p", { class: "alert alert-error", role: "alert" }, err.message));
    return;
  }
  const edit = (reply) => {
    const title = h("input", { id: "qr-title", name: "title", required: true, maxlength: 100, value: reply?.title || "", autocomplete: "off" });
    const text = h("textarea", { id: "qr-body", name: "body", required: true, rows: 5 });
    text.value = reply?.body || "";
    formDialog({
      title: reply ? `Edit “${reply.title}”` : "New quick reply",
      body: [h("label", { for: "qr-title" }, "Title (what staff search for)"), title, h("label", { for: "qr-body" }, "Text inserted into the message"), text],
      submitLabel: reply ? "Save" : "Create quick reply",
      async onSubmit(form) {
        const values = { title: form.get("title"), body: form.get("body") };
        if (reply) await api.request(QR.update, { id: reply.id, ...values });
        else await api.request(QR.create, { practiceId, ...values });
        toast(reply ? "Quick reply saved." : "Quick reply created.", "ok", 2500);
        renderQuickReplies(ctx);
      },
    });
    title.focus();
  };
  const remove = (reply) =>
    formDialog({
      title: `Delete “${reply.title}”?`,
      body: h("p", {}, "Staff will no longer find it in the composer."),
      submitLabel: "Delete",
      danger: true,
      async onSubmit() {
        await api.request(QR.remove, { id: reply.id });
        toast("Quick reply deleted.", "ok", 2500);
        renderQuickReplies(ctx);
      },
    });
  body.replaceChildren(
    h(
      "section",
      { class: "card" },
      h("p", { class: "muted" }, isMailboxAdmin ? "Texts every staff member can insert into a message from the composer's Quick replies button." : "Texts you can insert into a message from the composer's Quick replies button. Mailbox admins manage them."),
      isMailboxAdmin ? h("button", { type: "button", class: "btn btn-primary", id: "new-quick-reply", onclick: () => edit(null) }, "+ New Quick Reply") : null,
      replies.length
        ? h(
            "ul",
            { class: "quick-reply-admin", id: "quick-reply-list" },
            replies.map((r) =>
              h(
                "li",
                { dataset: { quickReplyId: r.id } },
                h("div", {}, h("strong", {}, r.title), h("p", { class: "muted small qr-text" }, r.body)),
                isMailboxAdmin
                  ? h("div", { class: "qr-actions" }, h("button", { type: "button", class: "btn btn-small", onclick: () => edit(r) }, "Edit"), h("button", { type: "button", class: "btn btn-small btn-danger", onclick: () => remove(r) }, "Delete"))
                  : null,
              ),
            ),
          )
        : h("p", { class: "muted", id: "quick-reply-list" }, "No quick replies yet."),
    ),
  );
}
