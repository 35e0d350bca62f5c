// Live updates: GraphQL subscriptions over WebSocket with `after` resume and a reconnect banner.
// Views apply each event's payload to what they show (no request per event). They refetch only when the server
// refuses a resume (`onResync`), or poll when the server offers no subscription for the view at all.
import { createWsClient, wsUrl } from "./ws.js";
import { banner } from "./ui.js";

export function createLive({ auth = () => null, pollMs = 4000 } = {}) {
  let everConnected = false;
  const client = createWsClient({
    url: wsUrl(),
    connectionParams: () => (auth() ? { authorization: `Bearer ${auth()}` } : {}),
    onStatus(state) {
      if (state === "connected" || state === "reconnected") everConnected = true;
      if (state === "reconnecting") banner("Connection lost — reconnecting… Missed updates will be replayed.", "warn");
      else if (state === "reconnected") banner("Reconnected. You are up to date.", "ok", 2500);
      else if (state === "connected") banner(null);
      else if (state === "refused") banner("Live updates stopped: your sign-in is no longer valid. Reload the page to sign in again.", "warn");
    },
  });
  window.pmmLive = client; // lets support staff (and the browser tests) force a reconnect from the console

  // onEvent(event) gets each event's payload, in log order; onResync() means "refetch what you show".
  function watch({ query, variables, onEvent, onResync = () => {}, poll }) {
    let failed = false;
    let stopped = false;
    const unsubscribe = client.subscribe({
      query,
      variables,
      onEvent(event) {
        if (!stopped) onEvent(event);
      },
      onResync() {
        if (!stopped) onResync();
      },
      onError(errors) {
        failed = true;
        console.warn("Live updates unavailable for this view; polling instead.", errors);
      },
    });
    // While a socket that worked is reconnecting, nothing is polled: the resume replays what was missed.
    const timer = setInterval(() => {
      if (!stopped && poll && (failed || (!everConnected && !client.connected))) poll();
    }, pollMs);
    return () => {
      stopped = true;
      clearInterval(timer);
      unsubscribe();
    };
  }

  return { watch, client };
}
