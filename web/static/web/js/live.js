// Live updates: GraphQL subscriptions over WebSocket with `after` resume and a reconnect banner.
// If the server offers no subscription for a view, the view polls instead, so it stays current either way.
import { createWsClient, wsUrl } from "./ws.js";
import { banner } from "./ui.js";

export function createLive({ auth = () => null, pollMs = 4000 } = {}) {
  const client = createWsClient({
    url: wsUrl(),
    connectionParams: () => (auth() ? { authorization: `Bearer ${auth()}` } : {}),
    onStatus(state) {
      if (state === "reconnecting") banner("Connection lost — reconnecting… Missed updates will be replayed.", "warn");
      else if (state === "reconnected") banner("Reconnected. You are up to date.", "ok", 2500);
      else if (state === "connected") banner(null);
      else if (state === "refused") banner("Live updates stopped: your sign-in is no longer valid. Reload the page to sign in again.", "warn");
    },
  });
  window.pmmLive = client; // lets support staff (and the browser tests) force a reconnect from the console

  function watch({ query, variables, onEvent, poll }) {
    let failed = false;
    let stopped = false;
    let pending = null;
    const refresh = () => {
      if (pending) return;
      pending = setTimeout(() => {
        pending = null;
        if (!stopped) onEvent();
      }, 120);
    };
    const unsubscribe = client.subscribe({
      query,
      variables,
      onEvent: refresh,
      onError(errors) {
        failed = true;
        console.warn("Live updates unavailable for this view; polling instead.", errors);
      },
    });
    const timer = setInterval(() => {
      if (!stopped && (failed || !client.connected) && poll) poll();
    }, pollMs);
    return () => {
      stopped = true;
      clearInterval(timer);
      unsubscribe();
    };
  }

  return { watch, client };
}
