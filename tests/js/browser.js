#!/usr/bin/env node
// Test driver for headless Chromium (puppeteer-core, Debian's chromium; no
// browser download). Driven over stdin/stdout, one JSON object per line; every
// command carries a `seq` and gets exactly one answer with the same `seq`.
//
// Start: node browser.js <executable> <user-data-dir>
// Commands (stdin):
//   {"seq":1,"op":"open","page":"a","url":"http://127.0.0.1:1234/demo/?room=r"}
//   {"seq":2,"op":"eval","page":"a","expr":"document.body.dataset.state"}
//         (an expression; a Promise is awaited)
//   {"seq":3,"op":"wait","page":"a","expr":"document.body.dataset.peers === '1'","ms":20000}
//   {"seq":4,"op":"screenshot","page":"a","path":"/tmp/x.png"}
//   {"seq":5,"op":"log","page":"a"}     what the page did: requests (WebSockets too), errors
//   {"seq":6,"op":"close","page":"a"}
//   {"seq":7,"op":"exit"}
// Answers (stdout):
//   {"type":"ready","browser":"Chrome/..."}                 (once, at start)
//   {"seq":2,"ok":true,"value":...}  or  {"seq":2,"ok":false,"error":"..."}
"use strict";

const readline = require("readline");
const puppeteer = require("puppeteer-core");

const [executablePath, userDataDir] = process.argv.slice(2);
const pages = new Map(); // name -> { page, requests: [], errors: [] }

// Flags that work headless without a sandbox, plus fake camera and microphone.
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
  "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
  "--disable-backgrounding-occluded-windows",
  `--user-data-dir=${userDataDir}`,
];

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function describe(error) {
  return String(error && error.message ? error.message : error);
}

async function open(browser, name, url) {
  if (pages.has(name)) throw new Error(`page ${name} is already open`);
  const page = await browser.newPage();
  const state = { page, requests: [], errors: [] };
  pages.set(name, state);
  page.on("request", (request) => state.requests.push(request.url()));
  // WebSocket connections are no "request" events: the DevTools protocol reports them.
  const cdp = await page.createCDPSession();
  await cdp.send("Network.enable");
  cdp.on("Network.webSocketCreated", ({ url }) => state.requests.push(url));
  page.on("requestfailed", (request) => {
    const failure = request.failure();
    // A long-poll cut by a closing page or the upgrade is not an error of the page.
    if (!/socket\.io/.test(request.url())) state.errors.push(`request failed: ${request.url()} ${failure && failure.errorText}`);
  });
  page.on("pageerror", (error) => state.errors.push(`page error: ${describe(error)}`));
  page.on("console", (message) => {
    if (message.type() === "error") state.errors.push(`console error: ${message.text()}`);
  });
  await page.goto(url, { waitUntil: "load" });
  return true;
}

function pageNamed(name) {
  const state = pages.get(name);
  if (!state) throw new Error(`no page named ${name}`);
  return state;
}

async function run(browser, command) {
  switch (command.op) {
    case "open":
      return open(browser, command.page, command.url);
    case "eval":
      return pageNamed(command.page).page.evaluate(`(async () => (${command.expr}))()`);
    case "wait": {
      const { page } = pageNamed(command.page);
      await page.waitForFunction(command.expr, { timeout: command.ms || 10000, polling: 100 });
      return true;
    }
    case "screenshot":
      await pageNamed(command.page).page.screenshot({ path: command.path, fullPage: true });
      return command.path;
    case "log": {
      const { requests, errors } = pageNamed(command.page);
      return { requests, errors };
    }
    case "close": {
      const state = pageNamed(command.page);
      pages.delete(command.page);
      await state.page.close({ runBeforeUnload: false });
      return { requests: state.requests, errors: state.errors };
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(command.op)}`);
  }
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath, args: ARGS, headless: true, pipe: true, defaultViewport: { width: 1280, height: 800 },
  });
  let closing = false;
  async function exit(code) {
    if (closing) return;
    closing = true;
    await browser.close().catch(() => {});
    process.exit(code);
  }
  browser.on("disconnected", () => closing || (out({ type: "error", error: "the browser went away" }), process.exit(3)));
  out({ type: "ready", browser: await browser.version() });
  const lines = readline.createInterface({ input: process.stdin });
  lines.on("line", async (line) => {
    let command;
    try {
      command = JSON.parse(line);
    } catch (error) {
      return out({ type: "error", error: `bad command line: ${describe(error)}` });
    }
    if (command.op === "exit") {
      out({ seq: command.seq, ok: true, value: null });
      return exit(0);
    }
    try {
      const value = await run(browser, command);
      out({ seq: command.seq, ok: true, value: value === undefined ? null : value });
    } catch (error) {
      out({ seq: command.seq, ok: false, error: describe(error) });
    }
  });
  lines.on("close", () => exit(0));
}

main().catch((error) => {
  out({ type: "error", error: `cannot start the browser: ${describe(error)}` });
  process.exit(2);
});
