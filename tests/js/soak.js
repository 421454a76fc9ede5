#!/usr/bin/env node
// Soak client: pairs of socket.io-client users run connect / hello / join /
// relay / leave / disconnect cycles against a jsongle server, many at once.
//
//   node soak.js URL TOKEN CYCLES CONCURRENCY REPORT_EVERY
//
// CYCLES counts client cycles (a pair round is two). Every REPORT_EVERY
// completed cycles it prints {"done": n}; at the end {"done": n, "end": true,
// "seconds": s}. Any protocol surprise prints {"error": ...} and exits 1.
// One pair round in ten starts on long-polling and upgrades (the default
// transports); the others open a WebSocket directly.
"use strict";

const { io } = require("socket.io-client");

const [url, token, cyclesArg, concurrencyArg, reportArg] = process.argv.slice(2);
const CYCLES = Number(cyclesArg);
const PAIRS = Math.max(1, Math.floor(Number(concurrencyArg) / 2));
const REPORT_EVERY = Number(reportArg);
const SERVER_ID = "jsongle-server";
const TIMEOUT_MS = 30000;

let done = 0;
let nextReport = REPORT_EVERY;
let started = 0;
let seq = 0;
const t0 = Date.now();

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function fail(message) {
  out({ error: String(message) });
  process.exit(1);
}

function uuid() {
  seq += 1;
  return `soak-${process.pid}-${seq}`;
}

// A client whose JSONgle messages are awaited one predicate at a time.
class Client {
  constructor(uid, polling) {
    this.uid = uid;
    this.inbox = [];
    this.waiters = [];
    const options = { auth: { appToken: token }, forceNew: true, reconnection: false };
    if (!polling) options.transports = ["websocket"];
    this.socket = io(url, options);
    this.socket.on("jsongle", (message) => this.deliver(message));
    this.socket.on("connect_error", (err) => fail(`connect_error ${err.message}`));
  }

  deliver(message) {
    const index = this.waiters.findIndex((w) => w.match(message));
    if (index >= 0) {
      const [waiter] = this.waiters.splice(index, 1);
      clearTimeout(waiter.timer);
      waiter.resolve(message);
    } else {
      this.inbox.push(message);
    }
  }

  next(match, what) {
    const index = this.inbox.findIndex(match);
    if (index >= 0) return Promise.resolve(this.inbox.splice(index, 1)[0]);
    return new Promise((resolve) => {
      const timer = setTimeout(() => fail(`${this.uid}: no ${what} within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
      this.waiters.push({ match, resolve, timer });
    });
  }

  send(to, jsongle) {
    const message = { id: uuid(), from: this.socket.id, to, jsongle };
    this.socket.emit("jsongle", message);
    return message;
  }

  async iq(query, rid) {
    const transaction = uuid();
    this.send(SERVER_ID, { action: "iq-set", query, transaction, description: { rid } });
    const answer = await this.next((m) => m.jsongle.transaction === transaction, query);
    if (answer.jsongle.action !== "iq-result") fail(`${query}: ${JSON.stringify(answer)}`);
  }

  async hello() {
    const hello = await this.next((m) => m.jsongle.query === "session-hello", "hello");
    const transaction = hello.jsongle.transaction;
    this.send(SERVER_ID, { action: "iq-result", query: "session-hello", transaction, description: { uid: this.uid, dn: "Soak" } });
    const ack = await this.next((m) => m.jsongle.action === "ack" && m.jsongle.transaction === transaction, "ack");
    if (ack.jsongle.status !== "success") fail(`hello: ${JSON.stringify(ack)}`);
  }

  close() {
    return new Promise((resolve) => {
      this.socket.once("disconnect", () => resolve());
      this.socket.disconnect();
    });
  }
}

function isText(message, id) {
  return message.jsongle.action === "session-text" && message.id === id;
}

async function round(pair, n) {
  const polling = n % 10 === 0;
  const rid = `soak-${pair}-${n}`;
  const a = new Client(`a${pair}`, polling);
  const b = new Client(`b${pair}`, polling);
  await Promise.all([a.hello(), b.hello()]);
  await a.iq("session-join", rid);
  await b.iq("session-join", rid);
  await a.next((m) => m.jsongle.event === "joined", "joined");
  const there = a.send(rid, { action: "session-text", namespace: "room", description: { text: "ping" } });
  await b.next((m) => isText(m, there.id), "relay a->b");
  const back = b.send(rid, { action: "session-text", namespace: "room", description: { text: "pong" } });
  await a.next((m) => isText(m, back.id), "relay b->a");
  await a.iq("session-leave", rid);
  await b.next((m) => m.jsongle.event === "left", "left");
  await b.iq("session-leave", rid);
  await Promise.all([a.close(), b.close()]);
}

async function worker(pair) {
  let n = 0;
  while (started < CYCLES) {
    started += 2;
    await round(pair, n);
    n += 1;
    done += 2;
    while (done >= nextReport && nextReport <= CYCLES) {
      out({ done: nextReport });
      nextReport += REPORT_EVERY;
    }
  }
}

process.on("unhandledRejection", (err) => fail(err && err.stack ? err.stack : err));

Promise.all(Array.from({ length: PAIRS }, (_, pair) => worker(pair))).then(() => {
  out({ done, end: true, seconds: (Date.now() - t0) / 1000 });
  process.exit(0);
});
