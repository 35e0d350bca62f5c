// Working the pool in the Workbench: list filters and order, the stats line, assignment and quick replies.

export const STATS_FIELDS = "openCount waitingCount oldestWaitingSince medianFirstResponseSeconds medianResponseSeconds";
export const ASSIGNMENT_HISTORY = "assignmentHistory { assignee { id fullName } previousAssignee { id fullName } changedBy { id fullName } reason at }";
export const QUICK_REPLIES = `query QuickReplies($practiceId: ID!, $query: String) { quickReplies(practiceId: $practiceId, query: $query) { id title body } }`;

export const POOL_MUTATIONS = (row) => ({
  assign: `mutation($id: ID!, $userId: ID, $reason: String) { assignConversation(conversationId: $id, userId: $userId, reason: $reason) { ${row} } }`,
  priority: `mutation($id: ID!, $priority: ConversationPriority!) { setConversationPriority(conversationId: $id, priority: $priority) { ${row} } }`,
});

// The list query's arguments for the filters chosen.
export function poolVariables(pool, meId) {
  return {
    assigneeId: pool.who === "me" ? meId : null,
    unassigned: pool.who === "unassigned" ? true : pool.who === "assigned" ? false : null,
    priority: pool.urgent ? "URGENT" : null,
    waitingOnly: pool.waiting || null,
    order: pool.order,
  };
}

// Whether a row from a live event belongs in the filtered list (the server's rules, on the event's fields).
export function matchesPool(c, pool, meId) {
  if (pool.who === "me" && c.assignee?.id !== meId) return false;
  if (pool.who === "unassigned" && c.assignee) return false;
  if (pool.who === "assigned" && !c.assignee) return false;
  if (pool.urgent && c.priority !== "URGENT") return false;
  if ((pool.waiting || pool.order === "LONGEST_WAITING") && !c.waitingSince) return false;
  return true;
}

const activity = (c) => Date.parse(c.lastMessageAt || c.createdAt || 0) || 0;

// The server's orders: most recent activity, urgent first (then recent), or the longest wait first.
export function poolOrder(order) {
  if (order === "URGENT_FIRST") return (a, b) => (b.priority === "URGENT") - (a.priority === "URGENT") || activity(b) - activity(a);
  if (order === "LONGEST_WAITING") return (a, b) => Date.parse(a.waitingSince) - Date.parse(b.waitingSince);
  return (a, b) => activity(b) - activity(a);
}

// "3 min", "2 h", "4 d": how long since a time.
export function fmtWait(iso) {
  return fmtSeconds((Date.now() - Date.parse(iso)) / 1000);
}

export function fmtSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${Math.max(0, Math.round(seconds))} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

export function renderStats(line, stats) {
  if (!stats) {
    line.hidden = true;
    return;
  }
  const parts = [
    `Open ${stats.openCount}`,
    `Waiting ${stats.waitingCount}`,
    stats.oldestWaitingSince ? `Oldest wait ${fmtWait(stats.oldestWaitingSince)}` : null,
    `Median first response ${fmtSeconds(stats.medianFirstResponseSeconds)}`,
    `Median response ${fmtSeconds(stats.medianResponseSeconds)} (30 days)`,
  ].filter(Boolean);
  line.textContent = parts.join(" · ");
  line.hidden = false;
}
