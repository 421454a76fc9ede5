#!/usr/bin/env node
// Relay load for bench/cluster.py: P pairs of WebSocket-only clients, each
// pair in its own P2P room, bouncing transport-info messages; W messages
// in flight per pair. Prints one JSON line: messages relayed per second
// over the measured window (and the total count, warm-up included).
//
//   node bench/relay-load.mjs --url ws://127.0.0.1:8080 --token T \
//        --pairs 20 --window 4 --warmup 2 --duration 8
//
// Uses the `ws` package installed with the test clients (tests/js).

import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";

const require = createRequire(new URL("../tests/js/package.json", import.meta.url));
const WebSocket = require("ws");

const opts = { url: "ws://127.0.0.1:8080", token: "", pairs: 20, window: 4, warmup: 2, duration: 8, server: "jsongle-server" };
for (let i = 2; i < process.argv.length; i += 2) {
  const key = process.argv[i].replace(/^--/, "");
  if (!(key in opts)) throw new Error(`unknown option ${process.argv[i]}`);
  opts[key] = typeof opts[key] === "number" ? Number(process.argv[i + 1]) : process.argv[i + 1];
}

const CANDIDATE = "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 10.0.0.5 rport 46154 generation 0";
let counting = false;
let relayed = 0;
let total = 0;
let seq = 0;

// One client: resolves once registered and joined; onRelay(message) afterwards.
function client(uid, rid) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${opts.url}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: false });
    const self = { ws, sid: null, send: null, onRelay: null };
    const emit = (message) => ws.send(`42${JSON.stringify(["jsongle", message])}`);
    self.send = (jsongle) => emit({ id: `m${++seq}`, from: self.sid, to: rid, jsongle });
    let joinTransaction = null;
    ws.on("error", reject);
    ws.on("message", (raw) => {
      const text = raw.toString();
      if (text === "2") return ws.send("3");
      if (text.startsWith("0")) return ws.send(`40${JSON.stringify({ appToken: opts.token })}`);
      if (text.startsWith("40")) {
        self.sid = JSON.parse(text.slice(2)).sid;
        return;
      }
      if (text.startsWith("44")) return reject(new Error(`refused: ${text}`));
      if (!text.startsWith("42")) return;
      const message = JSON.parse(text.slice(2))[1];
      const j = message.jsongle;
      if (j.action === "transport-info") return self.onRelay(message);
      if (j.action === "iq-get" && j.query === "session-hello") {
        emit({ id: `h${++seq}`, from: self.sid, to: opts.server,
          jsongle: { action: "iq-result", query: "session-hello", transaction: j.transaction, description: { uid, dn: uid } } });
        joinTransaction = `join-${uid}`;
        emit({ id: `j${++seq}`, from: self.sid, to: opts.server,
          jsongle: { action: "iq-set", query: "session-join", transaction: joinTransaction, description: { rid } } });
      } else if (j.transaction === joinTransaction && j.action === "iq-result") {
        resolve(self);
      } else if (j.transaction === joinTransaction) {
        reject(new Error(`join failed: ${JSON.stringify(j)}`));
      }
    });
  });
}

const call = (n) => ({ action: "transport-info", sid: "call", initiator: "a", responder: "b", description: { candidate: CANDIDATE, n } });

async function main() {
  const tag = `${process.pid}-${Date.now()}`;
  const pairs = [];
  for (let i = 0; i < opts.pairs; i++) {
    const rid = `bench-${tag}-${i}`;
    const a = await client(`a${i}`, rid);
    const b = await client(`b${i}`, rid);
    pairs.push([a, b]);
  }
  for (const [a, b] of pairs) {
    // Each receipt is one relayed copy; the receiver answers, keeping W in flight.
    a.onRelay = (m) => { total++; if (counting) relayed++; a.send(call(m.jsongle.description.n)); };
    b.onRelay = (m) => { total++; if (counting) relayed++; b.send(call(m.jsongle.description.n)); };
    for (let n = 0; n < opts.window; n++) a.send(call(n));
  }
  await new Promise((r) => setTimeout(r, opts.warmup * 1000));
  counting = true;
  const started = performance.now();
  await new Promise((r) => setTimeout(r, opts.duration * 1000));
  counting = false;
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(JSON.stringify({ relayed, total, seconds, rate: relayed / seconds, pairs: opts.pairs, window: opts.window }) + "\n");
  for (const [a, b] of pairs) { a.ws.terminate(); b.ws.terminate(); }
  process.exit(0);
}

main().catch((error) => { process.stderr.write(`relay-load: ${error.stack || error}\n`); process.exit(1); });
