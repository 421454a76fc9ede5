#!/usr/bin/env node
// A relayed call between two headless Chromium pages (tests/js/relay-call.html),
// signaled through the jsongle server. Driven by tests/support/relay_call.py.
//
//   node relay-call.js '<json>'
//     {"pageUrl": "http://127.0.0.1:P/relay-call.html",
//      "peers": [{"url", "auth", "uid", "rid", "iceServers"?}, {...}],  first = caller
//      "timeoutMs": 20000, "executablePath": "/usr/bin/chromium"}
//
// Prints one JSON line: {"outcome", "peers": [{"started", "stats"}...], "console": [...]}
// outcome: "connected"  both pages decode frames over a selected pair
//          "failed"     ICE or the connection failed on a page
//          "no-relay"   gathering ended on a page without a single relay candidate
//          "timeout"    none of these within timeoutMs
//          "error"      a step threw (message in "error")
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const puppeteer = require("puppeteer-core");

const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
];

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main() {
  const cfg = JSON.parse(process.argv[2]);
  const timeoutMs = cfg.timeoutMs || 20000;
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "jsongle-relay-call-"));
  const consoleLines = [];
  const result = { outcome: "error", peers: [], console: consoleLines };
  let browser = null;
  const close = async () => {
    if (browser) {
      const b = browser;
      browser = null;
      await b.close().catch(() => {});
    }
    fs.rmSync(userDataDir, { recursive: true, force: true });
  };
  process.on("SIGTERM", () => { close().finally(() => process.exit(143)); });
  try {
    browser = await puppeteer.launch({
      executablePath: cfg.executablePath || "/usr/bin/chromium",
      headless: true,
      args: [...FLAGS, `--user-data-dir=${userDataDir}`],
    });
    const pages = [];
    for (const [index, peer] of cfg.peers.entries()) {
      const page = await browser.newPage();
      page.on("console", (msg) => consoleLines.push(`page${index}: ${msg.text()}`));
      page.on("pageerror", (err) => consoleLines.push(`page${index} error: ${err.message}`));
      await page.goto(cfg.pageUrl, { waitUntil: "load" });
      pages.push(page);
      result.peers.push({ uid: peer.uid });
    }
    // The callee joins first: the caller's offer then has someone to reach.
    for (let index = cfg.peers.length - 1; index >= 0; index--) {
      result.peers[index].started = await pages[index].evaluate((opts) => startPeer(opts), cfg.peers[index]);
    }
    await pages[0].evaluate(() => call());
    const deadline = Date.now() + timeoutMs;
    result.outcome = "timeout";
    for (;;) {
      const stats = await Promise.all(pages.map((page) => page.evaluate(() => peerStats())));
      stats.forEach((s, index) => { result.peers[index].stats = s; });
      if (stats.every((s) => s && s.framesDecoded > 0 && s.pair)) {
        result.outcome = "connected";
        break;
      }
      if (stats.some((s) => s && (s.iceConnectionState === "failed" || s.connectionState === "failed"))) {
        result.outcome = "failed";
        break;
      }
      if (stats.some((s) => s && s.iceGatheringState === "complete" && !s.localCandidates.includes("relay"))) {
        result.outcome = "no-relay";
        break;
      }
      if (Date.now() > deadline) break;
      await sleep(250);
    }
  } catch (err) {
    result.outcome = "error";
    result.error = String(err && err.stack ? err.stack : err);
  } finally {
    await close();
  }
  out(result);
}

main().then(() => process.exit(0), (err) => { out({ outcome: "error", error: String(err) }); process.exit(1); });
