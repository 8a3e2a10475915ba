// Helpers for the browser scenarios: Debian's Chromium through playwright-core (which never
// downloads a browser here), tokens signed like a site's backend would, publishing, metrics,
// and waiting for a condition instead of sleeping and hoping.
import { createHmac } from "node:crypto";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

export const BASE = process.env.INFORMD_URL;
const SECRET = process.env.INFORMD_TEST_JWT_SECRET;
const PUBLISH_KEY = process.env.INFORMD_TEST_PUBLISH_KEY;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
/** How long a condition that should come true is waited for. */
export const TIMEOUT_MS = 15000;

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    // Chromium 156 asks before a page talks to 127.0.0.1 (Local Network Access); a headless
    // test cannot answer, so the check is off. --no-sandbox: CI runs as root.
    args: ["--no-sandbox", "--disable-features=LocalNetworkAccessChecks", "--disable-dev-shm-usage"],
  });
}

function base64url(data) {
  return Buffer.from(data).toString("base64url");
}

/** An HS256 user token, as the site's backend signs it. */
export function token(sub, ttlSecs = 3600) {
  const now = Math.floor(Date.now() / 1000);
  const head = base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = base64url(JSON.stringify({ sub, exp: now + ttlSecs, iat: now }));
  const signature = createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${signature}`;
}

export async function publish(event) {
  const response = await fetch(`${BASE}/publish`, {
    method: "POST",
    headers: { authorization: `Bearer ${PUBLISH_KEY}`, "content-type": "application/json" },
    body: JSON.stringify(event),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`publish ${response.status}: ${JSON.stringify(body)}`);
  return body;
}

/** A like for `user`; `n` makes each one recognisable. */
export function like(user, n) {
  return {
    to: [user],
    kind: "like",
    actor: { id: "7", name: `fan ${n}`, avatar: null },
    subject: { type: "article", id: String(n), title: `Post ${n}`, url: `/a/${n}` },
  };
}

/** The live session gauge from /metrics. */
export async function sessions() {
  const text = await (await fetch(`${BASE}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("informd_sessions "));
  if (!line) throw new Error("no informd_sessions in /metrics");
  return Number(line.split(" ")[1]);
}

export async function waitFor(what, check, timeout = TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

export function assertEqual(actual, expected, message) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${message}: expected ${e}, got ${a}`);
}

/**
 * A page on informd's origin that is not served by informd (the route answers it in the
 * browser), so it is same-origin with /inform like a site behind one proxy. It loads the real
 * /static/informd.js and records every event in `window.seen`.
 * `window.startClient(options)` connects; the token function calls back into this process.
 */
export const TEST_PAGE = `${BASE}/__test__/page.html`;
const PAGE_HTML = `<!doctype html><meta charset="utf-8"><title>informd test page</title>
<script src="/static/informd.js"></script>
<script>
window.seen = { notifications: [], unread: [], broadcasts: [], statuses: [], resumed: [] };
window.startClient = function (options) {
  options = Object.assign({ url: "/inform" }, options);
  if (options.token === "function") options.token = function () { return window.nodeToken(); };
  const client = informd.connect(options);
  client.on("notification", (n, unread) => seen.notifications.push({ id: n.id, seq: n.seq, unread }));
  client.on("unread", (u) => seen.unread.push(u));
  client.on("broadcast", (b) => seen.broadcasts.push({ topic: b.topic, seq: b.seq, data: b.data }));
  client.on("resumed", (r) => seen.resumed.push(r));
  client.on("status", (s, d) => seen.statuses.push({ status: s, code: d && d.code, reason: d && d.reason, final: !!(d && d.final) }));
  window.client = client;
  return true;
};
</script>`;

/** A browser context whose pages can open TEST_PAGE; `tokens` answers the page's token(). */
export async function context(browser, { tokens, initScript } = {}) {
  const ctx = await browser.newContext();
  await ctx.route(`${BASE}/__test__/**`, (route) =>
    route.fulfill({ status: 200, contentType: "text/html", body: PAGE_HTML }),
  );
  if (tokens) await ctx.exposeFunction("nodeToken", tokens);
  if (initScript) await ctx.addInitScript(initScript);
  return ctx;
}

export async function openTab(ctx, options) {
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.log(`page error: ${e}`));
  page.on("console", (m) => {
    if (m.type() === "error") console.log(`console: ${m.text()}`);
  });
  await page.goto(TEST_PAGE);
  await page.evaluate((o) => window.startClient(o), options);
  return page;
}

export const seen = (page) => page.evaluate(() => window.seen);
export const role = (page) => page.evaluate(() => window.client.role);
export const status = (page) => page.evaluate(() => window.client.status);

export async function waitLive(page) {
  await waitFor("the tab to be live", async () => (await status(page)) === "live");
}

/** Waits until the tab's handlers got exactly these notification seqs (and no more). */
export async function waitSeqs(page, expected, label) {
  await waitFor(`${label} to get seqs ${expected}`, async () => {
    const s = await seen(page);
    return s.notifications.length >= expected.length;
  });
  // A duplicate would arrive right behind the original: give it a moment to show up.
  await new Promise((r) => setTimeout(r, 300));
  const s = await seen(page);
  assertEqual(s.notifications.map((n) => n.seq), expected, `${label}: notification seqs`);
}

/** Asks the Rust test to kill informd and start it again on the same port and database. */
export async function restartDaemon() {
  console.log("@@restart");
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === "restarted") {
      lines.close();
      return;
    }
  }
  throw new Error("stdin closed before the restart finished");
}
