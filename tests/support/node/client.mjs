// The reference graphql-ws client (graphql-transport-ws protocol) against a pulsegraph API.
//
//   node client.mjs subscribe <ws url> <token> <profile id>   follow profileViews until killed
//   node client.mjs connect   <ws url> <token>                connect, then report the close
//
// Every event is one JSON line on stdout, for tests/test_protocol.py to read:
//   {"event":"connected"} {"event":"ping"} {"event":"next","data":...,"errors":...}
//   {"event":"error","error":...} {"event":"complete"} {"event":"closed","code":4403,"reason":"..."}
// The client never retries and sends no pings of its own (keepAlive: 0): every ping it reports
// came from the server, and it answers each with a pong (the library does).
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [mode, url, token, profileId] = process.argv.slice(2);
const out = (record) => process.stdout.write(JSON.stringify(record) + "\n");

const VIEWS = `subscription Views($profileId: ID!) {
  profileViews(profileId: $profileId) { eventId profileId occurredAt deviceType browser os referrer }
}`;

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${token}` },
  lazy: false,
  retryAttempts: 0,
  keepAlive: 0,
  onNonLazyError: () => {}, // reported through on.closed
  on: {
    connected: () => out({ event: "connected" }),
    ping: (received) => {
      if (received) out({ event: "ping" });
    },
    closed: (event) => {
      out({ event: "closed", code: event?.code ?? null, reason: event?.reason ?? null });
      if (mode === "connect") process.exit(0);
    },
  },
});

if (mode === "subscribe") {
  client.subscribe(
    { query: VIEWS, variables: { profileId } },
    {
      next: (result) => out({ event: "next", data: result.data ?? null, errors: result.errors ?? null }),
      error: (error) => {
        out({ event: "error", error: error?.code ?? (Array.isArray(error) ? error : String(error)) });
      },
      complete: () => out({ event: "complete" }),
    },
  );
} else if (mode !== "connect") {
  out({ event: "usage", error: `unknown mode ${mode}` });
  process.exit(2);
}

process.on("SIGTERM", async () => {
  await client.dispose();
  process.exit(0);
});
