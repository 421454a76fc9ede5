#!/usr/bin/env node
// Test puppet: holds named socket.io-client sockets and is driven over
// stdin/stdout, one JSON object per line in each direction.
//
// Commands (stdin):
//   {"op":"connect","client":"a","url":"http://127.0.0.1:1234","options":{...}}
//   {"op":"emit","client":"a","event":"jsongle","args":[...],"ack":true,"seq":7}
//   {"op":"close","client":"a"}
//   {"op":"stop_pong","client":"a"}
//   {"op":"raw","client":"a","packet":"42[\"x\"]"}   (verbatim Engine.IO frame, see raw())
//   {"op":"state","client":"a"}                        (answers a "state" line)
//   {"op":"drop","client":"a"}                         (destroys the engine's TCP socket(s))
//   {"op":"exit"}
//
// Events (stdout):
//   {"type":"ready","socketioClient":"4.8.1"}                    (once, at start)
//   {"client":"a","type":"connect","id":...,"transport":"polling","recovered":false}
//   {"client":"a","type":"state","id":...,"connected":true,"active":true,"recovered":false,
//    "pid":...,"offset":...}                                     (socket._pid/_lastOffset)
//   {"client":"a","type":"upgrade","transport":"websocket"}
//   {"client":"a","type":"event","event":"jsongle","args":[...]}  (+ "serverAck":true
//                                                                   when the server asked for an ack; it is never answered)
//   {"client":"a","type":"ack","seq":7,"args":[...]}
//   {"client":"a","type":"connect_error","message":...,"data":...}
//   {"client":"a","type":"disconnect","reason":...}
//   {"client":"a","type":"reconnect_attempt","attempt":1}
//   {"client":"a","type":"ping"}
//   {"type":"error","message":...,"command":...}                  (bad command; never crashes)
"use strict";

const readline = require("readline");
const { io } = require("socket.io-client");

const clients = new Map(); // name -> { socket, manager, noPong }

function out(obj) {
  // stdout to a pipe is synchronous on Linux, so each line is flushed at once.
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function reportError(message, command) {
  const line = { type: "error", message: String(message) };
  if (command !== undefined) line.command = command;
  out(line);
}

process.on("uncaughtException", (err) => {
  reportError("uncaught exception: " + (err && err.stack ? err.stack : err));
});
process.on("unhandledRejection", (err) => {
  reportError("unhandled rejection: " + (err && err.stack ? err.stack : err));
});

// Replaces the engine's packet sender so that "pong" packets are dropped: the
// engine still receives pings (and still reports them), but the server never
// hears back and must time the client out.
function dropPongs(engine) {
  if (!engine || engine.__puppetNoPong) return;
  const name = typeof engine._sendPacket === "function" ? "_sendPacket" : "sendPacket";
  const original = engine[name];
  if (typeof original !== "function") {
    throw new Error("cannot find the engine's packet sender");
  }
  engine[name] = function (type, ...rest) {
    if (type === "pong") return;
    return original.call(this, type, ...rest);
  };
  engine.__puppetNoPong = true;
}

// Per-engine hooks; the Manager creates a new engine on every (re)connection.
function hookEngine(name, state) {
  const engine = state.manager.engine;
  if (!engine || engine.__puppetHooked) return;
  engine.__puppetHooked = true;
  engine.on("upgrade", (transport) => {
    if (clients.get(name) !== state) return;
    out({ client: name, type: "upgrade", transport: transport && transport.name });
  });
  if (state.noPong) dropPongs(engine);
}

function detach(state) {
  state.socket.offAny();
  state.socket.removeAllListeners();
  state.manager.removeAllListeners();
}

function connect(cmd) {
  const name = cmd.client;
  if (typeof cmd.url !== "string") throw new Error("connect needs a string url");
  const options = Object.assign({}, cmd.options || {}, { forceNew: true });

  const previous = clients.get(name);
  if (previous) {
    // Reusing a name replaces the old socket silently.
    detach(previous);
    clients.delete(name);
    previous.socket.disconnect();
  }

  const socket = io(cmd.url, options);
  const manager = socket.io;
  const state = { socket, manager, noPong: false };
  clients.set(name, state);
  const live = () => clients.get(name) === state;

  manager.on("open", () => hookEngine(name, state));
  hookEngine(name, state); // the first engine already exists (autoConnect)
  manager.on("ping", () => {
    if (live()) out({ client: name, type: "ping" });
  });
  manager.on("reconnect_attempt", (attempt) => {
    if (live()) out({ client: name, type: "reconnect_attempt", attempt });
  });

  socket.on("connect", () => {
    if (!live()) return;
    const engine = manager.engine;
    out({
      client: name,
      type: "connect",
      id: socket.id,
      transport: engine && engine.transport ? engine.transport.name : null,
      recovered: socket.recovered === true,
    });
  });
  socket.on("connect_error", (err) => {
    if (!live()) return;
    out({
      client: name,
      type: "connect_error",
      message: err && err.message,
      data: (err && err.data) || null,
    });
  });
  socket.on("disconnect", (reason) => {
    if (live()) out({ client: name, type: "disconnect", reason });
  });
  socket.onAny((event, ...args) => {
    if (!live()) return;
    const line = { client: name, type: "event", event };
    if (args.length && typeof args[args.length - 1] === "function") {
      args.pop();
      line.serverAck = true;
    }
    line.args = args;
    out(line);
  });
}

function getClient(cmd) {
  const state = clients.get(cmd.client);
  if (!state) throw new Error("unknown client " + JSON.stringify(cmd.client));
  return state;
}

function emit(cmd) {
  const state = getClient(cmd);
  if (typeof cmd.event !== "string") throw new Error("emit needs a string event");
  const args = cmd.args === undefined ? [] : cmd.args;
  if (!Array.isArray(args)) throw new Error("emit args must be an array");
  if (cmd.ack) {
    const seq = cmd.seq === undefined ? null : cmd.seq;
    const name = cmd.client;
    state.socket.emit(cmd.event, ...args, (...ackArgs) => {
      out({ client: name, type: "ack", seq, args: ackArgs });
    });
  } else {
    state.socket.emit(cmd.event, ...args);
  }
}

function close(cmd) {
  // Keeps the client registered so its "disconnect" line is still reported.
  getClient(cmd).socket.disconnect();
}

function stopPong(cmd) {
  const state = getClient(cmd);
  state.noPong = true;
  if (state.manager.engine) dropPongs(state.manager.engine);
}

// Sends cmd.packet verbatim as one Engine.IO frame on the current transport,
// bypassing the client's encoders: '42["x"]' is an Engine.IO message (4)
// carrying a Socket.IO EVENT (2). Over HTTP long-polling it is the whole POST
// body (so several packets may be joined with "\x1e").
function raw(cmd) {
  const state = getClient(cmd);
  if (typeof cmd.packet !== "string") throw new Error("raw needs a string packet");
  const engine = state.manager.engine;
  const transport = engine && engine.transport;
  if (!engine || engine.readyState !== "open" || !transport) {
    throw new Error("engine of client " + JSON.stringify(cmd.client) + " is not open");
  }
  if (transport.name === "websocket" && transport.ws) {
    transport.ws.send(cmd.packet);
  } else if (transport.name === "polling" && typeof transport.doWrite === "function") {
    transport.doWrite(cmd.packet, () => {});
  } else {
    throw new Error("raw is not supported on transport " + transport.name);
  }
}

function state(cmd) {
  const socket = getClient(cmd).socket;
  out({
    client: cmd.client,
    type: "state",
    id: socket.id === undefined ? null : socket.id,
    connected: socket.connected,
    active: socket.active,
    recovered: socket.recovered === true,
    pid: socket._pid === undefined ? null : socket._pid,
    offset: socket._lastOffset === undefined ? null : socket._lastOffset,
  });
}

// The network under the client goes away: its transport's TCP socket is
// destroyed without a close frame or packet (WebSocket only; cut polling
// with a proxy in front of the server).
function drop(cmd) {
  const engine = getClient(cmd).manager.engine;
  const transport = engine && engine.transport;
  const ws = transport && transport.ws;
  const raw = ws && ws._socket;
  if (!raw) throw new Error("drop needs an open WebSocket transport");
  raw.destroy();
}

let exiting = false;
function exitAll() {
  if (exiting) return;
  exiting = true;
  const closing = [];
  for (const state of clients.values()) {
    const engine = state.manager.engine;
    if (engine && engine.readyState !== "closed") {
      closing.push(new Promise((resolve) => engine.once("close", resolve)));
    }
    state.socket.disconnect();
  }
  // Give the engines a moment to flush their close packets, then leave.
  const deadline = new Promise((resolve) => setTimeout(resolve, 1000));
  Promise.race([Promise.all(closing), deadline]).then(() => process.exit(0));
}

const ops = {
  connect,
  emit,
  close,
  stop_pong: stopPong,
  raw,
  state,
  drop,
  exit: exitAll,
};

function handle(line) {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    reportError("invalid JSON: " + err.message, line);
    return;
  }
  if (cmd === null || typeof cmd !== "object" || Array.isArray(cmd)) {
    reportError("command must be a JSON object", cmd);
    return;
  }
  const op = ops[cmd.op];
  if (!op || !Object.prototype.hasOwnProperty.call(ops, cmd.op)) {
    reportError("unknown op " + JSON.stringify(cmd.op), cmd);
    return;
  }
  if (cmd.op !== "exit" && typeof cmd.client !== "string") {
    reportError("command needs a string client", cmd);
    return;
  }
  try {
    op(cmd);
  } catch (err) {
    reportError(err && err.message ? err.message : err, cmd);
  }
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", handle);
rl.on("close", exitAll);

out({ type: "ready", socketioClient: require("socket.io-client/package.json").version });
