// Opens pages in headless Chromium and reports what each page concluded.
//
//   node browser_pages.js SPEC.json
//
// SPEC: {"pages": [{"name": "alice", "url": "http://...", "readyWhen": "window.__ready === true"}, ...],
//        "timeoutMs": 30000, "chromium": "/usr/bin/chromium"}
//
// Every page runs its own script and sets `window.__done = true` when it has
// finished, with what it found in `window.__result` (anything JSON can hold).
// Pages are opened in the order given and all run at once in one browser;
// a page with `readyWhen` must make that expression true before the next
// page is opened.
// Once every page is done (or the time is up), one JSON line is printed on
// stdout: {"ok": true, "results": {name: result, ...}} or
// {"ok": false, "error": "...", "results": {name: partial result or null}}.
// The pages' console lines and errors go to stderr, prefixed with the name.
// The browser is always closed before the process exits.

"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const puppeteer = require("puppeteer-core");

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
  // Pages that are not in front must keep their timers and media running.
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
  "--autoplay-policy=no-user-gesture-required",
  // Calls between two pages of this browser stay on 127.0.0.1.
  "--allow-loopback-in-peer-connection",
];

async function main() {
  const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const timeout = spec.timeoutMs || 30000;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "jsongle-chromium-"));
  const results = {};
  let browser = null;
  let outcome = { ok: true };
  try {
    browser = await puppeteer.launch({
      executablePath: spec.chromium || "/usr/bin/chromium",
      args: [...FLAGS, `--user-data-dir=${profile}`],
      headless: true,
      protocolTimeout: timeout + 10000,
    });
    const pages = [];
    for (const { name, url, readyWhen } of spec.pages) {
      const page = await browser.newPage();
      results[name] = null;
      page.on("console", (message) => process.stderr.write(`[${name}] ${message.type()}: ${message.text()}\n`));
      page.on("pageerror", (error) => process.stderr.write(`[${name}] page error: ${error.message}\n`));
      page.on("requestfailed", (request) =>
        process.stderr.write(`[${name}] request failed: ${request.url()} ${request.failure()?.errorText}\n`));
      await page.goto(url, { waitUntil: "domcontentloaded", timeout });
      pages.push({ name, page });
      if (readyWhen) {
        await page.waitForFunction(`(${readyWhen}) || window.__done === true`, { timeout, polling: 50 });
      }
    }
    const deadline = Date.now() + timeout;
    for (const { name, page } of pages) {
      try {
        await page.waitForFunction("window.__done === true", { timeout: Math.max(1, deadline - Date.now()), polling: 100 });
      } catch (error) {
        outcome = { ok: false, error: `${name}: not done in ${timeout} ms` };
      }
    }
    for (const { name, page } of pages) {
      results[name] = await page.evaluate(() => (window.__result === undefined ? null : window.__result));
    }
  } catch (error) {
    outcome = { ok: false, error: String(error && error.stack ? error.stack : error) };
  } finally {
    if (browser !== null) {
      await browser.close().catch(() => {});
    }
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify({ ...outcome, results }) + "\n");
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stdout.write(JSON.stringify({ ok: false, error: String(error), results: {} }) + "\n");
    process.exit(1);
  },
);
