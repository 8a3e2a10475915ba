// Browser scenarios, one per `node scenarios.mjs NAME`, run by tests/browser/main.rs against
// the real informd it started. Exit code 0: passed; anything else: the error is printed.
import {
  BASE, assert, assertEqual, context, launch, like, openTab, publish, restartDaemon, role, seen,
  sessions, status, token, waitFor, waitLive, waitSeqs,
} from "./lib.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The demo page, rendered, with its informd.js held back (so it has not connected) until
 * `release()` is called.
 */
async function demoRenderedButNotConnected(browser) {
  const ctx = await browser.newContext();
  let release;
  const held = new Promise((r) => (release = r));
  await ctx.route(`${BASE}/static/informd.js*`, async (route) => {
    await held;
    await route.continue();
  });
  const page = await ctx.newPage();
  await page.goto(`${BASE}/`, { waitUntil: "commit" });
  await page.waitForSelector("#badge");
  return { page, release };
}

async function leaderOf(tabs) {
  return waitFor("one leader", async () => {
    const roles = await Promise.all(tabs.map(role));
    const leaders = roles.filter((r) => r === "leader").length;
    return leaders === 1 && roles.filter((r) => r === "follower").length === tabs.length - 1
      ? tabs[roles.indexOf("leader")]
      : null;
  });
}

async function tabsLive(tabs) {
  for (const tab of tabs) await waitLive(tab);
}

const scenarios = {
  /** Three tabs, one socket: a publish reaches each tab once and counts one session. */
  async three_tabs_share_one_socket(browser) {
    const ctx = await context(browser);
    const tabs = [];
    for (let i = 0; i < 3; i++) tabs.push(await openTab(ctx, { token: token("alice") }));
    await tabsLive(tabs);
    await leaderOf(tabs);
    await waitFor("one session on the server", async () => (await sessions()) === 1);
    const answer = await publish(like("alice", 1));
    assertEqual(answer.online_sessions, 1, "online_sessions in the publish answer");
    for (const [i, tab] of tabs.entries()) await waitSeqs(tab, [1], `tab ${i}`);
    await publish(like("alice", 2));
    for (const [i, tab] of tabs.entries()) await waitSeqs(tab, [1, 2], `tab ${i}`);
    for (const tab of tabs) assertEqual((await seen(tab)).unread.at(-1), 2, "badge");
    assertEqual(await sessions(), 1, "sessions after the publishes");
  },

  /**
   * More was missed than a replay brings (the daemon runs with `replay_max` 3): the newest
   * arrive, and the page hears `resumed` with `complete: false`, its cue to refetch.
   */
  async incomplete_replay_is_reported(browser) {
    const ctx = await context(browser);
    for (let i = 1; i <= 5; i++) await publish(like("lee", i));
    const tab = await openTab(ctx, { token: token("lee"), since: 0 });
    await waitLive(tab);
    await waitSeqs(tab, [3, 4, 5], "the newest three");
    const user = async () => (await seen(tab)).resumed.filter((r) => r.stream === "user");
    await waitFor("a resumed event", async () => (await user()).length > 0);
    assertEqual(await user(), [{ stream: "user", replayed: 3, complete: false }], "resumed");
  },

  /** Tabs close one by one, the leader first; events published in each gap arrive once. */
  async tabs_close_one_by_one(browser) {
    const ctx = await context(browser);
    const tabs = [];
    for (let i = 0; i < 3; i++) tabs.push(await openTab(ctx, { token: token("bob") }));
    await tabsLive(tabs);
    await publish(like("bob", 1));
    for (const tab of tabs) await waitSeqs(tab, [1], "before any close");
    let expected = [1];
    let seq = 1;
    while (tabs.length > 1) {
      const leader = await leaderOf(tabs);
      tabs.splice(tabs.indexOf(leader), 1);
      const closed = Date.now();
      await leader.close();
      // Published while no tab holds the socket: the next leader resumes with `since`.
      seq += 1;
      await publish(like("bob", seq));
      expected = [...expected, seq];
      const next = await leaderOf(tabs);
      await waitLive(next);
      const takeover = Date.now() - closed;
      assert(takeover < 2000, `the next leader was live ${takeover} ms after the close`);
      console.log(`takeover after a close: ${takeover} ms`);
      seq += 1;
      await publish(like("bob", seq));
      expected = [...expected, seq];
      for (const [i, tab] of tabs.entries()) await waitSeqs(tab, expected, `tab ${i}`);
    }
    await waitFor("one session on the server", async () => (await sessions()) === 1);
  },

  /** The leader's renderer crashes: another tab leads within 2 s; nothing lost or doubled. */
  async leader_tab_crashes(browser) {
    const ctx = await context(browser);
    const tabs = [];
    for (let i = 0; i < 3; i++) tabs.push(await openTab(ctx, { token: token("kim") }));
    await tabsLive(tabs);
    await publish(like("kim", 1));
    for (const tab of tabs) await waitSeqs(tab, [1], "before the crash");
    const leader = await leaderOf(tabs);
    tabs.splice(tabs.indexOf(leader), 1);
    const cdp = await ctx.newCDPSession(leader);
    const crashed = Date.now();
    cdp.send("Page.crash").catch(() => {});
    await publish(like("kim", 2)); // while the socket may still be the dead tab's
    const next = await leaderOf(tabs);
    await waitLive(next);
    const takeover = Date.now() - crashed;
    assert(takeover < 2000, `the next leader was live ${takeover} ms after the crash`);
    await publish(like("kim", 3));
    for (const [i, tab] of tabs.entries()) await waitSeqs(tab, [1, 2, 3], `tab ${i}`);
    await waitFor("one session on the server", async () => (await sessions()) === 1);
    console.log(`takeover after a crash: ${takeover} ms`);
  },

  /** "Mark all read" in one tab sets the badge to 0 in the others. */
  async mark_all_read_reaches_every_tab(browser) {
    const ctx = await context(browser);
    const tabs = [];
    for (let i = 0; i < 3; i++) tabs.push(await openTab(ctx, { token: token("carol") }));
    await tabsLive(tabs);
    for (let n = 1; n <= 3; n++) await publish(like("carol", n));
    for (const tab of tabs) await waitSeqs(tab, [1, 2, 3], "tab");
    // A follower gives the command: it travels to the leader's socket.
    const follower = tabs[(await Promise.all(tabs.map(role))).indexOf("follower")];
    await follower.evaluate(() => window.client.markRead({ all: true }));
    for (const tab of tabs) {
      await waitFor("the badge at 0", async () => (await seen(tab)).unread.at(-1) === 0);
    }
    const answer = await (await fetch(`${BASE}/api/notifications/unread`, {
      headers: { authorization: `Bearer ${token("carol")}` },
    })).json();
    assertEqual(answer.unread, 0, "unread on the server");
  },

  /** informd killed and started again: offline, then live, and later events arrive once. */
  async server_restart(browser) {
    const ctx = await context(browser);
    const tabs = [await openTab(ctx, { token: token("dave") }), await openTab(ctx, { token: token("dave") })];
    await tabsLive(tabs);
    await publish(like("dave", 1));
    for (const tab of tabs) await waitSeqs(tab, [1], "before the restart");
    await restartDaemon();
    for (const tab of tabs) {
      await waitFor("offline", async () => (await seen(tab)).statuses.some((s) => s.status === "offline"));
    }
    // Published at once: before the page is back, or just after. Either way, once, in order.
    for (let n = 2; n <= 4; n++) await publish(like("dave", n));
    for (const tab of tabs) await waitLive(tab);
    await publish(like("dave", 5));
    for (const [i, tab] of tabs.entries()) await waitSeqs(tab, [1, 2, 3, 4, 5], `tab ${i}`);
    const statuses = (await seen(tabs[0])).statuses.map((s) => s.status);
    assert(statuses.indexOf("offline") < statuses.lastIndexOf("live"), `offline then live: ${statuses}`);
  },

  /** A token about to expire: the client sends `refresh` with a fresh one; no reconnect. */
  async token_refreshed_before_exp(browser) {
    let calls = 0;
    const ctx = await context(browser, {
      tokens: () => {
        calls += 1;
        return token("erin", 4);
      },
    });
    const tab = await openTab(ctx, { token: "function" });
    await waitLive(tab);
    await sleep(9000); // two token lifetimes (leeway 0): without refresh, closed with 4001
    await publish(like("erin", 1));
    await waitSeqs(tab, [1], "after two lifetimes");
    assert(calls >= 3, `the token function was called ${calls} times`);
    const statuses = (await seen(tab)).statuses.map((s) => s.status);
    assert(!statuses.includes("offline"), `never offline: ${statuses}`);
  },

  /** The site cannot give a token in time: closed with 4001, token() again, resume. */
  async token_expired_4001_reconnects(browser) {
    let calls = 0;
    const ctx = await context(browser, {
      tokens: () => {
        calls += 1;
        if (calls === 1) return token("fred", 3);
        if (calls === 2) throw new Error("the site is down for a moment");
        return token("fred", 3600);
      },
    });
    const tab = await openTab(ctx, { token: "function" });
    await waitLive(tab);
    await waitFor("close 4001", async () => (await seen(tab)).statuses.some((s) => s.code === 4001));
    await publish(like("fred", 1)); // during the gap, or after: arrives once
    await waitFor("live again", async () => {
      const s = (await seen(tab)).statuses;
      return s.findIndex((x) => x.code === 4001) < s.map((x) => x.status).lastIndexOf("live");
    });
    await publish(like("fred", 2));
    await waitSeqs(tab, [1, 2], "after the new token");
    assert(calls >= 3, `token() called ${calls} times`);
  },

  /** A policy close (refresh with another user's token: 1008) stops: offline, final. */
  async policy_close_stops(browser) {
    let calls = 0;
    const ctx = await context(browser, {
      tokens: () => {
        calls += 1;
        // One for each tab at start (it names the tabs' channel), then the refresh.
        return calls <= 2 ? token("gina", 4) : token("mallory", 3600);
      },
    });
    const tabs = [await openTab(ctx, { token: "function" }), await openTab(ctx, { token: "function" })];
    await tabsLive(tabs);
    for (const tab of tabs) {
      await waitFor("offline with 1008", async () =>
        (await seen(tab)).statuses.some((s) => s.status === "offline" && s.final && s.code === 1008),
      );
    }
    await sleep(2000);
    assertEqual(await sessions(), 0, "no tab reconnected");
    for (const tab of tabs) assertEqual(await status(tab), "offline", "status stays offline");
    // A tab of the same user opened now learns from the stopped leader why it is offline.
    const later = await openTab(ctx, { token: token("gina") });
    await waitFor("the later tab offline with 1008", async () =>
      (await seen(later)).statuses.some((s) => s.status === "offline" && s.final && s.code === 1008),
    );
    assertEqual(await sessions(), 0, "the later tab did not connect either");
  },

  /** Two users in one browser do not share a socket: each tab sees its own user's events. */
  async two_users_do_not_share(browser) {
    const ctx = await context(browser);
    const alice = await openTab(ctx, { token: token("lea") });
    const bob = await openTab(ctx, { token: token("max") });
    await tabsLive([alice, bob]);
    assertEqual([await role(alice), await role(bob)], ["leader", "leader"], "roles");
    await waitFor("two sessions", async () => (await sessions()) === 2);
    await publish(like("lea", 1));
    await publish(like("max", 1));
    await publish(like("max", 2));
    await waitSeqs(alice, [1], "lea's tab");
    await waitSeqs(bob, [1, 2], "max's tab");
    assertEqual((await seen(alice)).unread.at(-1), 1, "lea's badge");
  },

  /** Without BroadcastChannel and Web Locks every tab keeps its own socket, and works. */
  async fallback_without_sharing_apis(browser) {
    const ctx = await context(browser, {
      initScript: () => {
        delete window.BroadcastChannel;
        Object.defineProperty(Navigator.prototype, "locks", { get: () => undefined });
      },
    });
    const tabs = [await openTab(ctx, { token: token("hank") }), await openTab(ctx, { token: token("hank") })];
    await tabsLive(tabs);
    for (const tab of tabs) assertEqual(await role(tab), "solo", "role");
    const answer = await publish(like("hank", 1));
    assertEqual(answer.online_sessions, 2, "one session per tab");
    for (const tab of tabs) await waitSeqs(tab, [1], "tab");
    await tabs[0].evaluate(() => window.client.markRead({ all: true }));
    for (const tab of tabs) {
      await waitFor("badge 0", async () => (await seen(tab)).unread.at(-1) === 0);
    }
  },

  /** A tab rendered at an older seq joins a live leader: it gets what it missed, once. */
  async late_tab_with_rendered_seq(browser) {
    const ctx = await context(browser);
    const first = await openTab(ctx, { token: token("ivy") });
    await waitLive(first);
    await publish(like("ivy", 1));
    await waitSeqs(first, [1], "first tab");
    // Rendered by the server at seq 1; two more are published before its script runs.
    await publish(like("ivy", 2));
    await publish(like("ivy", 3));
    const late = await openTab(ctx, { token: token("ivy"), since: 1 });
    await waitSeqs(late, [2, 3], "late tab");
    await publish(like("ivy", 4));
    await waitSeqs(late, [2, 3, 4], "late tab");
    await waitSeqs(first, [1, 2, 3, 4], "first tab");
    assertEqual(await sessions(), 1, "one socket for both");
  },

  /** A tab rendered before anything the leader holds: the leader asks again from its seq. */
  async late_tab_older_than_the_leader(browser) {
    const ctx = await context(browser);
    for (let n = 1; n <= 3; n++) await publish(like("lou", n));
    const first = await openTab(ctx, { token: token("lou"), since: 3 });
    await waitLive(first);
    await publish(like("lou", 4));
    await waitSeqs(first, [4], "first tab");
    const late = await openTab(ctx, { token: token("lou"), since: 1 });
    await waitSeqs(late, [2, 3, 4], "late tab");
    await publish(like("lou", 5));
    await waitSeqs(late, [2, 3, 4, 5], "late tab");
    await waitSeqs(first, [4, 5], "first tab, nothing doubled by the second replay");
    await waitFor("one session", async () => (await sessions()) === 1);
  },

  /** Broadcasts: `global` reaches every tab once; a topic only the tabs that asked for it. */
  async broadcasts_and_topics(browser) {
    const ctx = await context(browser);
    const a = await openTab(ctx, { token: token("jo"), topics: ["article:1"] });
    const b = await openTab(ctx, { token: token("jo") });
    await tabsLive([a, b]);
    await sleep(300); // the subscribe of `a` goes through before the broadcast
    await publish({ topic: "global", data: { message: "hello all" } });
    await publish({ topic: "article:1", data: { message: "new comment" } });
    await waitFor("a gets both", async () => (await seen(a)).broadcasts.length === 2);
    await waitFor("b gets global", async () => (await seen(b)).broadcasts.length === 1);
    await sleep(300);
    assertEqual((await seen(a)).broadcasts.map((x) => x.topic), ["global", "article:1"], "tab a");
    assertEqual((await seen(b)).broadcasts.map((x) => x.topic), ["global"], "tab b");
    await b.evaluate(() => window.client.subscribe("article:1"));
    await sleep(300);
    await publish({ topic: "article:1", data: { message: "another" } });
    await waitFor("b gets the topic now", async () => (await seen(b)).broadcasts.length === 2);
  },

  /** informd.mjs as an ES module, from a page on another origin (CORS). */
  async es_module_from_another_origin(browser) {
    const ctx = await browser.newContext();
    const site = "http://site.test";
    await ctx.route(`${site}/**`, (route) =>
      route.fulfill({
        status: 200,
        contentType: "text/html",
        body: `<!doctype html><script type="module">
          import { connect } from "${BASE}/static/informd.mjs";
          window.loaded = typeof connect === "function" && typeof window.informd.connect === "function";
        </script>`,
      }),
    );
    const page = await ctx.newPage();
    await page.goto(`${site}/page`);
    await waitFor("the module to load", () => page.evaluate(() => window.loaded === true));
  },

  /** The demo: like in the panel of one tab raises the badge and fills the dropdown of another. */
  async demo_page(browser) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 760 } });
    const one = await ctx.newPage();
    await one.goto(`${BASE}/`);
    await one.waitForSelector("#status.status-live");
    const two = await ctx.newPage();
    await two.goto(`${BASE}/`);
    await two.waitForSelector("#status.status-live");
    assertEqual(await one.textContent("#badge"), "0", "badge before");
    await two.selectOption("#act-as", "bob");
    await two.click('.action[data-kind="like"]');
    await one.waitForFunction(() => document.querySelector("#badge").dataset.count === "1");
    await two.waitForFunction(() => document.querySelector("#badge").dataset.count === "1");
    await one.click("#bell");
    const text = await one.textContent("#notifications .notification.unread");
    assert(text.includes("Bob Okafor") && text.includes("liked"), `dropdown item: ${text}`);
    await two.selectOption("#act-as", "carol");
    await two.click('.action[data-kind="reply"]');
    await two.click('.action[data-kind="follow"]');
    await one.waitForFunction(() => document.querySelector("#badge").dataset.count === "3");
    assertEqual(await one.locator("#notifications .notification").count(), 3, "dropdown items");
    await two.fill("#announce-text", "Scheduled maintenance tonight at 22:00 UTC.");
    await two.click("#announce");
    for (const tab of [one, two]) {
      await tab.waitForSelector(".toast:has-text('Scheduled maintenance')");
    }
    assertEqual(await sessions(), 1, "one session for both tabs");
    if (process.env.INFORMD_SCREENSHOT) {
      await sleep(500); // the toast's entrance animation
      await one.screenshot({ path: process.env.INFORMD_SCREENSHOT });
      console.log(`screenshot saved to ${process.env.INFORMD_SCREENSHOT}`);
    }
    await two.click("#bell");
    await two.click("#mark-all");
    await one.waitForFunction(() => document.querySelector("#badge").dataset.count === "0");
    assertEqual(await one.locator("#notifications .notification.unread").count(), 0, "unread items");
  },

  /** The demo groups likes: three readers like the article, the dropdown shows one item. */
  async demo_grouped_likes(browser) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${BASE}/`);
    await page.waitForSelector("#status.status-live");
    for (const who of ["alice", "bob", "carol"]) {
      await page.selectOption("#act-as", who);
      await page.click('.action[data-kind="like"]');
      await page.waitForFunction(
        (n) => document.querySelector("#notifications .notification")?.dataset.count === n,
        String(["alice", "bob", "carol"].indexOf(who) + 1),
      );
    }
    const expected = "Carol Nguyen, Bob Okafor and Alice Martin liked Ten years of hand-written badges";
    const live = await page.textContent("#notifications .notification .notification-text");
    assertEqual(live, expected, "the live item");
    assertEqual(await page.locator("#notifications .notification").count(), 1, "items live");
    assertEqual(await page.textContent("#badge"), "1", "badge live");
    // Rendered by the server the same way.
    await page.reload();
    await page.waitForSelector("#status.status-live");
    assertEqual(await page.locator("#notifications .notification").count(), 1, "items rendered");
    const rendered = await page.textContent("#notifications .notification .notification-text");
    assertEqual(rendered, expected, "the rendered item");
    assertEqual(await page.textContent("#badge"), "1", "badge rendered");
    // A fourth like, by someone already listed: first again, and the rest counted.
    await page.selectOption("#act-as", "alice");
    await page.click('.action[data-kind="like"]');
    await page.waitForFunction(
      () => document.querySelector("#notifications .notification")?.dataset.count === "4",
    );
    const four = await page.textContent("#notifications .notification .notification-text");
    assertEqual(four, "Alice Martin, Carol Nguyen and 2 others liked Ten years of hand-written badges", "four likes");
    assertEqual(await page.locator("#notifications .notification").count(), 1, "items after four");
    assertEqual(await page.textContent("#badge"), "1", "badge after four");
  },

  /** The demo page's render-to-connect gap: published between render and connect, once. */
  async demo_render_to_connect_gap(browser) {
    await publish(like("reader", 1));
    const { page, release } = await demoRenderedButNotConnected(browser);
    assertEqual(await page.textContent("#badge"), "1", "rendered badge");
    await publish(like("reader", 2));
    await publish(like("reader", 3));
    release();
    await page.waitForSelector("#status.status-live");
    await page.waitForFunction(() => document.querySelector("#badge").dataset.count === "3");
    await sleep(300);
    const ids = await page.$$eval("#notifications .notification", (items) => items.map((i) => i.dataset.seq));
    assertEqual(ids, ["3", "2", "1"], "dropdown, newest first, each once");
  },

  /**
   * More was published between render and connect than a replay brings (the daemon runs
   * with `replay_max` 3): the demo reloads its list from the inbox, so nothing is missing.
   */
  async demo_reloads_after_an_incomplete_replay(browser) {
    await publish(like("reader", 1));
    const { page, release } = await demoRenderedButNotConnected(browser);
    for (let i = 2; i <= 6; i++) await publish(like("reader", i));
    release();
    await page.waitForSelector("#status.status-live");
    await page.waitForFunction(() => document.querySelectorAll("#notifications .notification").length === 6);
    await sleep(300);
    const seqs = await page.$$eval("#notifications .notification", (items) => items.map((i) => i.dataset.seq));
    assertEqual(seqs, ["6", "5", "4", "3", "2", "1"], "dropdown, newest first, each once");
    assertEqual(await page.textContent("#badge"), "6", "badge");
  },

  /** The demo's "mute likes on this post": muted likes never reach the bell; unmuting. */
  async demo_mute_likes(browser) {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${BASE}/`);
    await page.waitForSelector("#status.status-live");
    const pressed = () => page.getAttribute("#mute-likes", "aria-pressed");
    assertEqual(await pressed(), "false", "not muted at first");
    await page.click("#mute-likes");
    await page.waitForSelector('#mute-likes[aria-pressed="true"]');
    assert((await page.textContent("#mute-likes")).includes("Unmute"), "the label says unmute");
    const postLike = { ...like("reader", 42), group: "like:article:42" };
    assertEqual((await publish(postLike)).muted, 1, "the like is muted");
    await publish({ ...like("reader", 7), kind: "follow" });
    await page.waitForFunction(() => document.querySelector("#badge").dataset.count === "1");
    const kinds = await page.$$eval("#notifications .notification", (items) => items.map((i) => i.textContent));
    assertEqual(kinds.length, 1, "only the follow is in the dropdown");
    assert(kinds[0].includes("started following you"), `dropdown item: ${kinds[0]}`);
    // The server renders the control as it is now.
    await page.reload();
    await page.waitForSelector("#status.status-live");
    assertEqual(await pressed(), "true", "still muted after a reload");
    await page.click("#mute-likes");
    await page.waitForSelector('#mute-likes[aria-pressed="false"]');
    assertEqual((await publish(postLike)).muted, 0, "the like is no longer muted");
    await page.waitForFunction(() => document.querySelector("#badge").dataset.count === "2");
  },

  /** The page snippet of docs/django.md, as Django rendered it, in a real browser. */
  async django_guide_snippet(browser) {
    const { readFile } = await import("node:fs/promises");
    const html = await readFile(process.env.GUIDE_PAGE, "utf8");
    const user = process.env.GUIDE_USER;
    const ctx = await browser.newContext();
    let tokenCalls = 0;
    await ctx.route(`${BASE}/guide/page`, (route) =>
      route.fulfill({ status: 200, contentType: "text/html", body: html }),
    );
    // The Django token view of the guide, answered here with a token signed the same way.
    await ctx.route(`${BASE}/notifications/token/`, (route) => {
      tokenCalls += 1;
      route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify({ token: token(user) }) });
    });
    const page = await ctx.newPage();
    page.on("pageerror", (e) => console.log(`page error: ${e}`));
    await page.goto(`${BASE}/guide/page`);
    const rendered = Number(await page.textContent("#informd-badge"));
    await page.waitForFunction(() => document.body.dataset.informd === "live");
    await publish(like(user, 1));
    await page.waitForFunction((n) => document.querySelector("#informd-badge").textContent === String(n), rendered + 1);
    assertEqual(tokenCalls, 0, "the rendered token served the first connection");
  },
};

const name = process.argv[2];
const scenario = scenarios[name];
if (!scenario) {
  console.error(`unknown scenario ${name}; known: ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
const browser = await launch();
try {
  await scenario(browser);
  console.log(`scenario ${name}: passed`);
} catch (e) {
  console.error(`scenario ${name}: FAILED\n${e && e.stack ? e.stack : e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
