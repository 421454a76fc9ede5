#!/usr/bin/env node
// A load generator for JSONgle signaling servers.
//
// It speaks Engine.IO v4 / Socket.IO v5 over a hand-written WebSocket client
// on raw TCP (no client library), so that the generator stays cheap next to
// the server it measures. One scenario per run; one JSON result line on
// stdout. See bench/README.md.
//
//   node bench/loadgen.mjs relay --url http://127.0.0.1:8080 --token T \
//        --pairs 10 --window 32 --payload ice --server-pid 1234

import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import { execFileSync } from "node:child_process";
import { performance } from "node:perf_hooks";

// -- options -----------------------------------------------------------------

const SCENARIOS = ["relay", "capacity", "churn", "connchurn"];

const DEFAULTS = {
  url: "http://127.0.0.1:8080",
  token: "",
  pairs: 10,
  window: 1,
  payload: "ice",
  connections: 1000,
  clients: 10,
  concurrency: 100,
  duration: 8,
  warmup: 1,
  settle: 1,
  timeout: 0,
  "server-pid": 0,
  "allow-remote": false,
  "server-id": "jsongle-server",
  resume: false,
};

// --resume: every client opts in to connection state recovery (resume: true
// in its CONNECT auth), to measure what the offsets and the log cost.
let RESUME = false;

function usage(message) {
  if (message) process.stderr.write(`loadgen: ${message}\n`);
  process.stderr.write(
    `usage: node bench/loadgen.mjs {${SCENARIOS.join("|")}} [--url URL] [--token T]\n` +
      "  relay:     --pairs P --window W --payload ice|sdp\n" +
      "  capacity:  --connections C [--concurrency N] [--settle S]\n" +
      "  churn:     --clients P        connchurn: --clients P\n" +
      "  common:    --duration S --warmup S --timeout S --server-pid PID --allow-remote --resume\n",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const scenario = argv[0];
  if (!SCENARIOS.includes(scenario)) usage(`unknown scenario ${scenario}`);
  const opts = { ...DEFAULTS };
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) usage(`unexpected ${arg}`);
    const key = arg.slice(2);
    if (!(key in DEFAULTS)) usage(`unknown option ${arg}`);
    if (typeof DEFAULTS[key] === "boolean") {
      opts[key] = true;
      continue;
    }
    const value = argv[++i];
    if (value === undefined) usage(`${arg} needs a value`);
    if (typeof DEFAULTS[key] === "number") {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0) usage(`${arg}: not a number: ${value}`);
      opts[key] = n;
    } else {
      opts[key] = value;
    }
  }
  if (!["ice", "sdp"].includes(opts.payload)) usage(`--payload must be ice or sdp`);
  return { scenario, opts };
}

function targetOf(url, allowRemote) {
  const parsed = new URL(url);
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  const loopback = host === "localhost" || host === "::1" || /^127\./.test(host);
  if (!loopback && !allowRemote) {
    usage(`${host} is not a loopback address; pass --allow-remote to load another machine`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "ws:") usage("only plain http:// or ws:// URLs");
  const base = parsed.pathname.endsWith("/") ? parsed.pathname : `${parsed.pathname}/`;
  const path = base === "/" ? "/socket.io/" : base;
  return { host: host === "localhost" ? "127.0.0.1" : host, port: Number(parsed.port || 80), path };
}

// -- the server process, read from /proc -------------------------------------

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** A process's CPU seconds in user and kernel mode, and its minor page faults. */
function procCpu(pid) {
  if (!pid) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { user: Number(fields[11]) / CLK_TCK, system: Number(fields[12]) / CLK_TCK, faults: Number(fields[7]) };
  } catch {
    return null;
  }
}

function procRssKb(pid) {
  if (!pid) return null;
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/** CPU of the server and of this generator over one measured interval. */
class CpuWindow {
  constructor(pid) {
    this.pid = pid;
    this.wall = performance.now();
    this.server = procCpu(pid);
    this.self = process.cpuUsage();
  }

  finish() {
    const wall = (performance.now() - this.wall) / 1000;
    const self = process.cpuUsage(this.self);
    const generator = (self.user + self.system) / 1e6 / wall;
    const end = procCpu(this.pid);
    const start = this.server;
    const known = start !== null && end !== null;
    const server = known ? (end.user + end.system - start.user - start.system) / wall : null;
    return {
      server_cpu: server === null ? null : round(server, 3),
      // The kernel's share (sockets, polling) and page faults per second:
      // where a change moves cost between our code and the system.
      server_system_cpu: known ? round((end.system - start.system) / wall, 3) : null,
      server_faults_per_s: known ? Math.round((end.faults - start.faults) / wall) : null,
      generator_cpu: round(generator, 3),
      // A generator near a full core measures itself, not the server.
      generator_saturated: generator >= 0.9,
    };
  }
}

// Warm up for --warmup, then measure for --duration: `setMeasuring` brackets
// the window in which a scenario counts, and the CPU use is read over it.
async function measuredWindow(opts, setMeasuring) {
  await sleep(opts.warmup * 1000);
  setMeasuring(true);
  const cpu = new CpuWindow(opts["server-pid"]);
  const start = performance.now();
  await sleep(opts.duration * 1000);
  setMeasuring(false);
  return { seconds: (performance.now() - start) / 1000, usage: cpu.finish() };
}

// -- payloads ----------------------------------------------------------------

const ICE_CANDIDATE =
  "candidate:3913046734 1 udp 2122262783 2a01:cb1d:8a3:6f00:9c4e:71ff:fe2b:5d13 54817 typ host " +
  "generation 0 ufrag 7Hq3 network-id 2 network-cost 10";

function sdpOffer() {
  const lines = [
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS 5c2a3b8e-6f0d-4c1e-9a57-1b2d3e4f5a6b",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:7Hq3",
    "a=ice-pwd:Zk8m2Yf0pQvX4rT6sB1nL9cJ",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 4F:2A:9C:61:0B:7E:D3:58:A1:C4:2E:90:6B:F7:13:8D:55:E2:0A:C9:3F:71:B6:4D:28:9E:E5:0C:A7:36:D1:F8",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendrecv",
    "a=msid:5c2a3b8e-6f0d-4c1e-9a57-1b2d3e4f5a6b 8f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:1001425379 cname:QmJ4x8Vt2LwZ9nYc",
    "a=ssrc:1001425379 msid:5c2a3b8e-6f0d-4c1e-9a57-1b2d3e4f5a6b 8f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 108 109 127 125 39 40 45 46 98 99 100 101 112 113 114",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:7Hq3",
    "a=ice-pwd:Zk8m2Yf0pQvX4rT6sB1nL9cJ",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 4F:2A:9C:61:0B:7E:D3:58:A1:C4:2E:90:6B:F7:13:8D:55:E2:0A:C9:3F:71:B6:4D:28:9E:E5:0C:A7:36:D1:F8",
    "a=setup:actpass",
    "a=mid:1",
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:13 urn:3gpp:video-orientation",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
    "a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type",
    "a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing",
    "a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=sendrecv",
    "a=msid:5c2a3b8e-6f0d-4c1e-9a57-1b2d3e4f5a6b 2b3c4d5e-6f70-8192-a3b4-c5d6e7f80912",
    "a=rtcp-mux",
    "a=rtcp-rsize",
  ];
  const video = [
    [96, "VP8/90000"], [98, "VP9/90000", "profile-id=0"], [100, "VP9/90000", "profile-id=2"],
    [102, "H264/90000", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"],
    [104, "H264/90000", "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f"],
    [127, "H264/90000", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f"],
    [45, "AV1/90000", "level-idx=5;profile=0;tier=0"],
    [112, "H264/90000", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f"],
  ];
  for (const [pt, codec, fmtp] of video) {
    lines.push(`a=rtpmap:${pt} ${codec}`);
    for (const fb of ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]) lines.push(`a=rtcp-fb:${pt} ${fb}`);
    if (fmtp) lines.push(`a=fmtp:${pt} ${fmtp}`);
    lines.push(`a=rtpmap:${pt + 1} rtx/90000`, `a=fmtp:${pt + 1} apt=${pt}`);
  }
  lines.push(
    "a=rtpmap:113 red/90000",
    "a=rtpmap:114 ulpfec/90000",
    "a=ssrc-group:FID 2231627014 632943048",
    "a=ssrc:2231627014 cname:QmJ4x8Vt2LwZ9nYc",
    "a=ssrc:2231627014 msid:5c2a3b8e-6f0d-4c1e-9a57-1b2d3e4f5a6b 2b3c4d5e-6f70-8192-a3b4-c5d6e7f80912",
    "a=ssrc:632943048 cname:QmJ4x8Vt2LwZ9nYc",
    "a=ssrc:632943048 msid:5c2a3b8e-6f0d-4c1e-9a57-1b2d3e4f5a6b 2b3c4d5e-6f70-8192-a3b4-c5d6e7f80912",
  );
  return lines.join("\r\n") + "\r\n";
}

/** The JSONgle body of a relayed message, with the timestamp left as a hole. */
function relayJsongle(kind, initiator, responder) {
  const sid = crypto.randomUUID();
  if (kind === "ice") {
    return {
      action: "transport-info",
      sid,
      initiator,
      responder,
      description: {
        ts: "@TS@",
        candidate: { candidate: ICE_CANDIDATE, sdpMid: "0", sdpMLineIndex: 0, usernameFragment: "7Hq3" },
      },
    };
  }
  return {
    action: "session-initiate",
    sid,
    initiator,
    responder,
    description: { ts: "@TS@", offer: { type: "offer", sdp: sdpOffer() }, media: ["audio", "video"] },
  };
}

// -- a minimal WebSocket + Engine.IO + Socket.IO client ----------------------

const TS_KEY = Buffer.from('"ts":');
const EMPTY = Buffer.alloc(0);

/** Writes made while handling a read go out together after it. */
const batch = { active: false, dirty: new Set() };

function flushBatch() {
  batch.active = false;
  for (const client of batch.dirty) client.flush();
  batch.dirty.clear();
}

class BenchError extends Error {}

class Client {
  constructor(target, token, label) {
    this.target = target;
    this.token = token;
    this.label = label;
    this.sid = null; // the Socket.IO socket id: our JSONgle address
    this.socket = null;
    this.buffer = EMPTY;
    this.upgraded = false;
    this.out = [];
    this.pending = new Map(); // transaction -> {resolve, reject}
    this.onRelay = null;
    this.closed = false;
    this.mask = crypto.randomBytes(4);
    this.ready = null;
    this.onClosed = null;
  }

  /** Connect, open the namespace with the token and complete session-hello. */
  open(uid) {
    return new Promise((resolve, reject) => {
      this.ready = { resolve, reject, uid };
      const socket = net.connect(this.target.port, this.target.host);
      this.socket = socket;
      socket.setNoDelay(true);
      socket.on("connect", () => {
        const key = crypto.randomBytes(16).toString("base64");
        socket.write(
          `GET ${this.target.path}?EIO=4&transport=websocket HTTP/1.1\r\n` +
            `Host: ${this.target.host}:${this.target.port}\r\n` +
            "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      socket.on("data", (chunk) => {
        batch.active = true;
        try {
          this.onData(chunk);
        } catch (error) {
          this.fail(error);
        }
        flushBatch();
      });
      socket.on("error", (error) => this.fail(error));
      socket.on("close", () => {
        this.closed = true;
        this.fail(new BenchError(`${this.label}: connection closed`));
        if (this.onClosed) this.onClosed();
      });
    });
  }

  fail(error) {
    if (this.ready) {
      const { reject } = this.ready;
      this.ready = null;
      reject(error);
    }
    for (const { reject } of this.pending.values()) reject(error);
    this.pending.clear();
  }

  onData(chunk) {
    let buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    if (!this.upgraded) {
      const end = buffer.indexOf("\r\n\r\n");
      if (end < 0) {
        this.buffer = buffer;
        return;
      }
      const head = buffer.subarray(0, end).toString("latin1");
      if (!head.startsWith("HTTP/1.1 101")) throw new BenchError(`upgrade refused: ${head.split("\r\n")[0]}`);
      this.upgraded = true;
      buffer = buffer.subarray(end + 4);
    }
    let offset = 0;
    const length = buffer.length;
    while (length - offset >= 2) {
      const b0 = buffer[offset];
      const b1 = buffer[offset + 1];
      let size = b1 & 0x7f;
      let header = 2;
      if (size === 126) {
        if (length - offset < 4) break;
        size = buffer.readUInt16BE(offset + 2);
        header = 4;
      } else if (size === 127) {
        if (length - offset < 10) break;
        size = Number(buffer.readBigUInt64BE(offset + 2));
        header = 10;
      }
      if (b1 & 0x80) throw new BenchError("masked frame from the server");
      if (length - offset < header + size) break;
      const payload = buffer.subarray(offset + header, offset + header + size);
      offset += header + size;
      const opcode = b0 & 0x0f;
      if (!(b0 & 0x80)) throw new BenchError("fragmented frame from the server");
      if (opcode === 1) this.onText(payload);
      else if (opcode === 8) {
        this.closed = true;
        this.socket.end();
      } else if (opcode === 9) this.sendFrame(0x8a, payload);
      else if (opcode !== 10) throw new BenchError(`unexpected opcode ${opcode}`);
    }
    this.buffer = offset === length ? EMPTY : Buffer.from(buffer.subarray(offset));
  }

  onText(payload) {
    const type = payload[0];
    if (type === 0x34 /* 4 message */) {
      const kind = payload[1];
      if (kind === 0x32 /* 2 event */) {
        if (this.onRelay !== null && payload.indexOf(TS_KEY) >= 0) {
          this.onRelay(payload);
          return;
        }
        const [name, message] = JSON.parse(payload.subarray(2).toString("utf8"));
        if (name === "jsongle") this.onJsongle(message);
      } else if (kind === 0x30 /* 0 connect */) {
        this.sid = JSON.parse(payload.subarray(2).toString("utf8")).sid;
      } else if (kind === 0x34 /* 4 connect error */) {
        throw new BenchError(`connect refused: ${payload.subarray(2).toString("utf8")}`);
      } else if (kind === 0x31 /* 1 disconnect */) {
        throw new BenchError("disconnected by the server");
      }
    } else if (type === 0x32 /* 2 ping */) {
      this.sendText("3");
    } else if (type === 0x30 /* 0 open */) {
      const auth = this.token ? { appToken: this.token } : {};
      if (RESUME) auth.resume = true;
      this.sendText(Object.keys(auth).length ? `40${JSON.stringify(auth)}` : "40");
    } else if (type === 0x31 /* 1 close */) {
      throw new BenchError("closed by the server");
    }
  }

  onJsongle(message) {
    const body = message && message.jsongle;
    if (!body) return;
    if (body.action === "iq-get" && body.query === "session-hello" && this.ready) {
      const { uid } = this.ready;
      const transaction = body.transaction;
      this.request(transaction, {
        id: crypto.randomUUID(),
        from: this.sid,
        to: message.from,
        jsongle: { action: "iq-result", query: "session-hello", transaction, description: { uid, dn: uid } },
      }).then(
        () => {
          const ready = this.ready;
          this.ready = null;
          if (ready) ready.resolve(this);
        },
        (error) => this.fail(error),
      );
      return;
    }
    const waiting = body.transaction !== undefined ? this.pending.get(body.transaction) : undefined;
    if (waiting === undefined) return;
    this.pending.delete(body.transaction);
    if (body.action === "iq-error" || (body.action === "ack" && body.status !== "success")) {
      waiting.reject(new BenchError(`${body.query || body.action} failed: ${JSON.stringify(body.description)}`));
    } else {
      waiting.resolve(body);
    }
  }

  /** Send a JSONgle message and wait for the answer with its transaction. */
  request(transaction, message) {
    return new Promise((resolve, reject) => {
      this.pending.set(transaction, { resolve, reject });
      this.emit(JSON.stringify(message));
    });
  }

  query(serverId, query, rid) {
    const transaction = crypto.randomUUID();
    return this.request(transaction, {
      id: crypto.randomUUID(),
      from: this.sid,
      to: serverId,
      jsongle: { action: "iq-set", query, transaction, description: { rid } },
    });
  }

  emit(json) {
    this.sendText(`42["jsongle",${json}]`);
  }

  sendText(text) {
    this.sendFrame(0x81, Buffer.from(text, "utf8"));
  }

  sendFrame(b0, payload) {
    const size = payload.length;
    const header = size < 126 ? 6 : size < 65536 ? 8 : 14;
    const frame = Buffer.allocUnsafe(header + size);
    frame[0] = b0;
    if (size < 126) frame[1] = 0x80 | size;
    else if (size < 65536) {
      frame[1] = 0x80 | 126;
      frame.writeUInt16BE(size, 2);
    } else {
      frame[1] = 0x80 | 127;
      frame.writeBigUInt64BE(BigInt(size), 2);
    }
    const mask = this.mask;
    mask.copy(frame, header - 4);
    for (let i = 0; i < size; i++) frame[header + i] = payload[i] ^ mask[i & 3];
    if (batch.active) {
      this.out.push(frame);
      batch.dirty.add(this);
    } else if (!this.closed) {
      this.socket.write(frame);
    }
  }

  flush() {
    const out = this.out;
    if (out.length === 0 || this.closed) return;
    this.out = [];
    this.socket.write(out.length === 1 ? out[0] : Buffer.concat(out));
  }

  /** A clean WebSocket close; resolves once the server has closed TCP. */
  close() {
    return new Promise((resolve) => {
      if (this.closed && this.socket.destroyed) return resolve();
      this.onClosed = resolve;
      this.ready = null;
      this.sendFrame(0x88, Buffer.from([0x03, 0xe8]));
      this.flush();
    });
  }

  destroy() {
    this.ready = null;
    this.closed = true;
    if (this.socket) this.socket.destroy();
  }
}

// -- helpers -----------------------------------------------------------------

function round(value, digits = 1) {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function percentiles(values) {
  if (values.length === 0) return { p50: null, p90: null, p99: null, max: null };
  const sorted = Float64Array.from(values).sort();
  const at = (q) => round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))], 3);
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: round(sorted[sorted.length - 1], 3) };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Run ``count`` jobs with at most ``limit`` at once. */
async function pool(count, limit, job) {
  let next = 0;
  const lanes = [];
  for (let lane = 0; lane < Math.min(limit, count); lane++) {
    lanes.push(
      (async () => {
        while (next < count) await job(next++);
      })(),
    );
  }
  await Promise.all(lanes);
}

const RUN = crypto.randomBytes(4).toString("hex");

async function openClients(ctx, count, prefix) {
  const clients = new Array(count);
  await pool(count, ctx.opts.concurrency, async (i) => {
    const client = new Client(ctx.target, ctx.opts.token, `${prefix}${i}`);
    clients[i] = client;
    await client.open(`${prefix}-${RUN}-${i}`);
  });
  return clients;
}

// -- scenarios ---------------------------------------------------------------

async function relay(ctx) {
  const { opts } = ctx;
  const pairs = opts.pairs;
  const clients = await openClients(ctx, pairs * 2, "relay");
  const lanes = [];
  let measuring = false;
  let stopped = false;
  let delivered = 0;
  const latencies = [];
  let frameBytes = 0;
  let sentBytes = 0;
  for (let i = 0; i < pairs; i++) {
    const sender = clients[2 * i];
    const receiver = clients[2 * i + 1];
    const rid = `relay-${RUN}-${i}`;
    await sender.query(opts["server-id"], "session-join", rid);
    await receiver.query(opts["server-id"], "session-join", rid);
    const template = JSON.stringify({
      id: crypto.randomUUID(),
      from: sender.sid,
      to: rid,
      jsongle: relayJsongle(opts.payload, sender.sid, receiver.sid),
    }).split('"@TS@"');
    const lane = { sender, receiver, inFlight: 0, head: template[0], tail: template[1] };
    sentBytes = Buffer.byteLength(`42["jsongle",${template.join(performance.now().toFixed(3))}]`);
    lane.send = () => {
      while (!stopped && lane.inFlight < opts.window) {
        lane.inFlight++;
        sender.emit(lane.head + performance.now().toFixed(3) + lane.tail);
      }
    };
    receiver.onRelay = (payload) => {
      const now = performance.now();
      const at = payload.indexOf(TS_KEY) + TS_KEY.length;
      let end = at;
      while (end < payload.length && ((payload[end] >= 0x30 && payload[end] <= 0x39) || payload[end] === 0x2e)) end++;
      const sent = Number(payload.toString("latin1", at, end));
      if (measuring) {
        delivered++;
        latencies.push(now - sent);
      }
      if (!frameBytes) frameBytes = payload.length;
      lane.inFlight--;
      lane.send();
    };
    lanes.push(lane);
  }
  for (const lane of lanes) lane.send();
  const { seconds, usage } = await measuredWindow(opts, (on) => {
    measuring = on;
  });
  stopped = true;
  return {
    pairs,
    window: opts.window,
    payload: opts.payload,
    sent_bytes: sentBytes,
    relayed_bytes: frameBytes,
    duration_s: round(seconds, 2),
    messages: delivered,
    msgs_per_s: round(delivered / seconds, 1),
    latency_ms: percentiles(latencies),
    ...usage,
    server_rss_kb: procRssKb(opts["server-pid"]),
    sockets: clients,
  };
}

async function capacity(ctx) {
  const { opts } = ctx;
  const count = opts.connections;
  const pid = opts["server-pid"];
  const before = procRssKb(pid);
  const cpu = new CpuWindow(pid);
  const start = performance.now();
  const clients = new Array(count);
  let retries = 0;
  await pool(count, opts.concurrency, async (i) => {
    for (let attempt = 0; ; attempt++) {
      const client = new Client(ctx.target, opts.token, `cap${i}`);
      clients[i] = client;
      try {
        await client.open(`cap-${RUN}-${i}`);
        await client.query(opts["server-id"], "session-join", `cap-${RUN}-${i >> 1}`);
        return;
      } catch (error) {
        // A refused or reset connection in a burst is counted and tried again.
        client.destroy();
        if (attempt >= 2) throw error;
        retries++;
      }
    }
  });
  const seconds = (performance.now() - start) / 1000;
  const usage = cpu.finish();
  await sleep(opts.settle * 1000);
  const after = procRssKb(pid);
  return {
    connections: count,
    connect_s: round(seconds, 2),
    connects_per_s: round(count / seconds, 1),
    retries,
    rss_before_kb: before,
    rss_after_kb: after,
    kb_per_client: before !== null && after !== null ? round((after - before) / count, 2) : null,
    ...usage,
    sockets: clients,
  };
}

async function churn(ctx) {
  const { opts } = ctx;
  const clients = await openClients(ctx, opts.clients, "churn");
  let measuring = false;
  let stopped = false;
  let cycles = 0;
  const loops = clients.map(async (client, i) => {
    const rid = `churn-${RUN}-${i}`;
    while (!stopped) {
      await client.query(opts["server-id"], "session-join", rid);
      await client.query(opts["server-id"], "session-leave", rid);
      if (measuring) cycles++;
    }
  });
  const { seconds, usage } = await measuredWindow(opts, (on) => {
    measuring = on;
  });
  stopped = true;
  await Promise.all(loops);
  return {
    clients: opts.clients,
    duration_s: round(seconds, 2),
    cycles,
    cycles_per_s: round(cycles / seconds, 1),
    ...usage,
    server_rss_kb: procRssKb(opts["server-pid"]),
    sockets: clients,
  };
}

async function connchurn(ctx) {
  const { opts } = ctx;
  let measuring = false;
  let stopped = false;
  let sessions = 0;
  let failures = 0;
  let laneError = null;
  let n = 0;
  const lanes = [];
  for (let lane = 0; lane < opts.clients; lane++) {
    lanes.push(
      (async () => {
        while (!stopped) {
          const i = n++;
          const client = new Client(ctx.target, opts.token, `conn${i}`);
          try {
            await client.open(`conn-${RUN}-${i}`);
            await client.query(opts["server-id"], "session-join", `conn-${RUN}-${i}`);
            await client.close();
          } catch (error) {
            client.destroy();
            if (++failures > 100) throw error;
            continue;
          }
          if (measuring) sessions++;
        }
      })().catch((error) => {
        laneError = error;
        stopped = true;
      }),
    );
  }
  const { seconds, usage } = await measuredWindow(opts, (on) => {
    measuring = on;
  });
  stopped = true;
  await Promise.all(lanes);
  if (laneError) throw laneError;
  return {
    clients: opts.clients,
    duration_s: round(seconds, 2),
    sessions,
    sessions_per_s: round(sessions / seconds, 1),
    failures,
    ...usage,
    server_rss_kb: procRssKb(opts["server-pid"]),
  };
}

const RUNNERS = { relay, capacity, churn, connchurn };

// -- main --------------------------------------------------------------------

async function main() {
  const { scenario, opts } = parseArgs(process.argv.slice(2));
  RESUME = opts.resume;
  const target = targetOf(opts.url, opts["allow-remote"]);
  const bound = opts.timeout || opts.warmup + opts.duration + (scenario === "capacity" ? 300 : 60);
  const base = { scenario, url: opts.url, server_pid: opts["server-pid"] || null };
  const timer = setTimeout(() => {
    process.stdout.write(JSON.stringify({ ...base, error: `timed out after ${bound} s` }) + "\n");
    process.exit(3);
  }, bound * 1000);
  timer.unref();
  let result;
  try {
    result = await RUNNERS[scenario]({ target, opts });
  } catch (error) {
    process.stdout.write(JSON.stringify({ ...base, error: String(error && error.message ? error.message : error) }) + "\n");
    process.exit(1);
  }
  const { sockets, ...figures } = result;
  process.stdout.write(JSON.stringify({ ...base, ...figures }) + "\n");
  for (const client of sockets || []) client.destroy();
  process.exit(0);
}

main();
