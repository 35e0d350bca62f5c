// A tiny graphql-transport-ws client: one socket, many subscriptions, automatic reconnect.
// Each subscription remembers the last event cursor and resubscribes with `after: cursor`, so nothing is lost.
// When the server refuses that resume (the cursor is older than its event log keeps), the subscription starts
// again live from now and its `onResync` tells the view to refetch what it shows: the one case where events
// alone cannot bring the view up to date.

const PROTOCOL = "graphql-transport-ws";

export function createWsClient({ url, connectionParams = () => ({}), onStatus = () => {} }) {
  let socket = null;
  let acked = false;
  let everAcked = false;
  let attempts = 0;
  let timer = null;
  let nextId = 1;
  let closedByUs = false;
  const subs = new Map();

  function status(state) {
    onStatus(state, { everAcked, attempts });
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function start(sub) {
    const variables = { ...sub.variables };
    if (sub.cursor) variables.after = sub.cursor;
    sub.resumedFrom = sub.cursor;
    sub.resumeRefused = false;
    send({ id: sub.id, type: "subscribe", payload: { query: sub.query, variables } });
  }

  // A VALIDATION_ERROR answering a subscribe that carried `after` is the server refusing the cursor; the same
  // document without `after` would be accepted (if it is refused too, that comes to onError as usual).
  function refusesResume(sub, errors) {
    return !!sub.resumedFrom && (errors || []).some((e) => e.extensions?.code === "VALIDATION_ERROR");
  }

  function resync(sub) {
    sub.cursor = null;
    start(sub); // live from now first, so nothing falls between the refetch and the first event
    sub.onResync();
  }

  function connect() {
    if (socket || closedByUs || !subs.size) return;
    acked = false;
    socket = new WebSocket(url, PROTOCOL);
    socket.onopen = () => send({ type: "connection_init", payload: connectionParams() });
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "connection_ack") {
        acked = true;
        const wasReconnect = everAcked;
        everAcked = true;
        attempts = 0;
        status(wasReconnect ? "reconnected" : "connected");
        for (const sub of subs.values()) start(sub);
      } else if (message.type === "ping") {
        send({ type: "pong" });
      } else if (message.type === "next") {
        const sub = subs.get(message.id);
        if (!sub) return;
        const data = message.payload.data || {};
        const event = Object.values(data)[0];
        if (message.payload.errors?.length && !event) {
          // The refusal ends the operation (`complete` follows); it is restarted there.
          if (refusesResume(sub, message.payload.errors)) sub.resumeRefused = true;
          else sub.onError(message.payload.errors);
          return;
        }
        // An event with a field refused (null, with an error) still carries the rest: the views keep what
        // they showed for the missing field.
        if (message.payload.errors?.length) console.warn("Live event with field errors", message.payload.errors);
        if (event && event.cursor) sub.cursor = event.cursor;
        sub.onLive();
        sub.onEvent(event);
      } else if (message.type === "error") {
        const sub = subs.get(message.id);
        if (sub && refusesResume(sub, message.payload)) resync(sub);
        else if (sub) {
          subs.delete(message.id);
          sub.onError(message.payload);
        }
      } else if (message.type === "complete") {
        const sub = subs.get(message.id);
        if (sub?.resumeRefused) resync(sub);
        else subs.delete(message.id);
      }
    };
    socket.onclose = (event) => {
      socket = null;
      acked = false;
      if (closedByUs || !subs.size) return;
      // 4401/4403: the server refused our credentials; retrying would not help.
      if (event.code === 4401 || event.code === 4403) {
        status("refused");
        for (const sub of subs.values()) sub.onError([{ message: event.reason || "Live updates were refused." }]);
        return;
      }
      attempts += 1;
      status(everAcked ? "reconnecting" : "unavailable");
      const delay = Math.min(10000, 500 * 2 ** Math.min(attempts, 5)) * (0.75 + Math.random() / 2);
      timer = setTimeout(() => {
        timer = null;
        connect();
      }, delay);
    };
  }

  return {
    subscribe({ query, variables = {}, cursor = null, onEvent, onError = () => {}, onLive = () => {}, onResync = () => {} }) {
      const id = String(nextId++);
      const sub = { id, query, variables, cursor, onEvent, onError, onLive, onResync, resumedFrom: null, resumeRefused: false };
      subs.set(id, sub);
      if (socket && acked) start(sub);
      else connect();
      return () => {
        if (subs.delete(id)) send({ id, type: "complete" });
      };
    },
    // Drops the socket as a network failure would; the client reconnects and resumes after the last cursor.
    reconnect() {
      if (socket) socket.close(4000, "Reconnect");
    },
    get connected() {
      return acked;
    },
    close() {
      closedByUs = true;
      if (timer) clearTimeout(timer);
      if (socket) socket.close(1000);
    },
  };
}

export function wsUrl(path = "/graphql") {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}
