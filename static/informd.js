/*! informd.js: the browser client of informd. One file, no dependencies, no build step.
 *
 *   <script src="/static/informd.js"></script>          defines window.informd
 *   import { connect } from "/static/informd.mjs";      the same code as an ES module
 *
 *   const client = informd.connect({ url: "/inform", token: async () => fetchToken(),
 *                                    since: 57, topics: ["article:42"] });
 *   client.on("notification", (notification, unread) => {});  // replace any item with its id
 *   client.on("unread", (unread) => {});
 *   client.on("broadcast", (broadcast) => {});
 *   client.on("status", (status, detail) => {});   // "connecting" | "live" | "offline"
 *   client.on("resumed", ({ stream, replayed, complete }) => {}); // complete false: refetch
 *   client.markRead({ all: true }); client.subscribe("article:43"); client.close();
 *
 * A notification of a `group` comes again, with the same `id`, a new `seq` and a larger
 * `count`, each time an event of its group is published while it is unread: the page replaces
 * the item with that `id` (and moves it to the top) instead of adding one.
 *
 * What it does for the page:
 * - Resumes: it remembers the last notification `seq` (and each topic's) and reconnects with
 *   `since`, so nothing published while it was away is lost, and nothing is handed out twice.
 * - Reconnects with exponential backoff and full jitter (at most 30 s), and follows the close
 *   codes of docs/PROTOCOL.md: 1001/1013/4002 and lost connections reconnect; 4001 asks the
 *   token function for a new token and reconnects; 1008/1009 stop ("offline" with the reason).
 * - Refreshes the token before its `exp` when `token` is a function, so a session is not cut.
 * - One socket per browser: tabs of one site elect a leader with the Web Locks API; the
 *   leader holds the WebSocket and passes every frame to the other tabs over a
 *   BroadcastChannel; their commands (markRead, subscribe) go to it the same way. When the
 *   leader closes or crashes, the browser hands the lock to another tab, which resumes with
 *   `since`. Each tab keeps its own `seq`s, so each event reaches each tab's handlers once.
 *   Without these APIs (or with `share: false`) every tab has its own socket.
 */
(function (global) {
  "use strict";

  var BACKOFF_BASE_MS = 500;
  var BACKOFF_CAP_MS = 30000;
  /** A connection that lived this long resets the backoff. */
  var STABLE_MS = 10000;
  /** Frames the leader keeps to fill the gap of a tab that joins late (its rendered seq). */
  var BUFFER_MAX = 500;
  var CLOSE_CODES = {
    1000: "closed",
    1001: "server going away",
    1002: "protocol error",
    1006: "connection lost",
    1008: "refused by policy",
    1009: "frame too large",
    1013: "server busy, try again later",
    4001: "token expired",
    4002: "idle",
  };
  var STOP_CODES = { 1002: true, 1008: true, 1009: true };

  function now() {
    return Date.now();
  }

  function randomId() {
    return Math.random().toString(36).slice(2) + now().toString(36);
  }

  /** The `exp` claim of a JWT in ms, or null (the token is opaque to us otherwise). */
  function tokenExpiry(token) {
    try {
      var part = String(token).split(".")[1];
      var json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
      var exp = JSON.parse(json).exp;
      return typeof exp === "number" ? exp * 1000 : null;
    } catch (e) {
      return null;
    }
  }

  /** The `sub` claim of a JWT, or "" (anonymous, or a token we cannot read). */
  function tokenSubject(token) {
    try {
      var part = String(token).split(".")[1];
      var sub = JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/"))).sub;
      return typeof sub === "string" ? sub : "";
    } catch (e) {
      return "";
    }
  }

  /** `url` as an absolute ws(s):// URL; a path or http(s) URL is taken relative to the page. */
  function socketUrl(url) {
    var base = global.location ? global.location.href : "http://localhost/";
    var absolute = new URL(url || "/inform", base);
    if (absolute.protocol === "http:") absolute.protocol = "ws:";
    if (absolute.protocol === "https:") absolute.protocol = "wss:";
    return absolute;
  }

  function sharingAvailable() {
    return (
      typeof global.BroadcastChannel === "function" &&
      !!global.navigator &&
      !!global.navigator.locks &&
      typeof global.navigator.locks.request === "function"
    );
  }

  /**
   * One tab's view of the stream: the seqs it has handed to its handlers, the badge, the
   * status, and the handlers. Every frame, from its own socket or from the leader's, goes
   * through `frame`, which hands each event to the handlers once.
   */
  function Client(options) {
    options = options || {};
    this.url = socketUrl(options.url);
    this.tokenSource = options.token;
    this.seq = typeof options.since === "number" ? options.since : null;
    this.topicSeqs = {};
    this.topics = {};
    var topics = options.topics || [];
    for (var i = 0; i < topics.length; i++) this.topics[topics[i]] = true;
    this.unread = null;
    this.status = "connecting";
    this.statusDetail = {};
    this.handlers = { notification: [], unread: [], broadcast: [], status: [], resumed: [] };
    this.closed = false;
    this.id = randomId();
    this.role = "solo";
    this.socket = null;
    this.token = null;
    var share = options.share !== false && sharingAvailable();
    if (share) {
      // Until it knows its place, a tab keeps its commands for whoever will hold the socket.
      this.role = "follower";
      this.pending = [];
      var self = this;
      // Tabs share a socket only with tabs of the same user: the channel is named after the
      // socket URL and the token's `sub`, so the token is fetched first (and reused to connect).
      this.getToken()
        .then(
          function (token) {
            return tokenSubject(token);
          },
          function () {
            return "?" + randomId(); // no token now: keep to ourselves rather than guess
          }
        )
        .then(function (subject) {
          if (self.closed) return;
          self.channelName =
            options.channel || "informd:" + self.url.href.split("?")[0] + "#" + subject;
          self.startSharing();
        });
    } else {
      this.lead();
    }
  }

  Client.prototype.on = function (event, handler) {
    var list = this.handlers[event];
    if (!list) throw new Error("informd: unknown event " + event);
    list.push(handler);
    var self = this;
    return function off() {
      self.off(event, handler);
    };
  };

  Client.prototype.off = function (event, handler) {
    var list = this.handlers[event] || [];
    var at = list.indexOf(handler);
    if (at >= 0) list.splice(at, 1);
  };

  Client.prototype.emit = function (event) {
    var args = Array.prototype.slice.call(arguments, 1);
    var list = (this.handlers[event] || []).slice();
    for (var i = 0; i < list.length; i++) {
      try {
        list[i].apply(null, args);
      } catch (e) {
        if (global.console) global.console.error("informd: a " + event + " handler threw", e);
      }
    }
  };

  Client.prototype.setStatus = function (status, detail) {
    detail = detail || {};
    if (this.status === status && this.statusDetail.reason === detail.reason) return;
    this.status = status;
    this.statusDetail = detail;
    this.emit("status", status, detail);
    if (this.role === "leader") this.post({ t: "status", status: status, detail: detail });
  };

  Client.prototype.setUnread = function (unread) {
    if (typeof unread !== "number" || unread === this.unread) return;
    this.unread = unread;
    this.emit("unread", unread);
  };

  /**
   * One frame of the stream. `since` is what the connection that carried it asked for: a
   * `welcome` on a connection opened without `since` starts the count at its `seq`.
   */
  Client.prototype.frame = function (frame, since) {
    switch (frame.type) {
      case "welcome":
        if (since === null && frame.user !== null) {
          this.seq = Math.max(this.seq || 0, frame.seq);
        }
        this.setUnread(frame.unread);
        break;
      case "notification": {
        var n = frame.notification;
        if (this.seq !== null && n.seq <= this.seq) return;
        this.seq = n.seq;
        this.emit("notification", n, frame.unread);
        this.setUnread(frame.unread);
        break;
      }
      case "unread":
        this.setUnread(frame.unread);
        break;
      case "broadcast": {
        var last = this.topicSeqs[frame.topic];
        if (last !== undefined && frame.seq <= last) return;
        this.topicSeqs[frame.topic] = frame.seq;
        if (frame.topic === "global" || this.topics[frame.topic]) this.emit("broadcast", frame);
        break;
      }
      case "subscribed":
        if (this.topicSeqs[frame.topic] === undefined) this.topicSeqs[frame.topic] = frame.seq;
        break;
      case "resumed":
        // `complete: false`: more was missed than the server replays, or some of it is gone;
        // the page should reload what it shows (GET /api/notifications).
        this.emit("resumed", {
          stream: frame.stream,
          replayed: frame.replayed,
          complete: frame.complete,
        });
        break;
      default:
        break;
    }
  };

  // ---- commands ------------------------------------------------------------------------

  /** `{all: true}`, `{ids: [...]}` or `{up_to: seq}`; every tab then gets the new badge. */
  Client.prototype.markRead = function (what) {
    var frame = { type: "read" };
    if (what && what.ids) frame.ids = what.ids;
    else if (what && typeof what.up_to === "number") frame.up_to = what.up_to;
    else frame.all = true;
    this.command({ frame: frame });
  };

  Client.prototype.subscribe = function (topic) {
    this.topics[topic] = true;
    this.command({ subscribe: topic });
  };

  Client.prototype.unsubscribe = function (topic) {
    delete this.topics[topic];
    this.command({ unsubscribe: topic });
  };

  /** Runs a command here when this tab holds the socket, or sends it to the leader. */
  Client.prototype.command = function (cmd) {
    if (this.role === "follower") {
      this.pending.push(cmd);
      this.post({ t: "cmd", from: this.id, cmd: cmd });
    } else {
      this.runCommand(cmd, this.id);
    }
  };

  Client.prototype.runCommand = function (cmd, from) {
    if (cmd.frame) {
      this.send(cmd.frame);
    } else if (cmd.subscribe) {
      var wanted = this.wanted[cmd.subscribe] || (this.wanted[cmd.subscribe] = {});
      var first = Object.keys(wanted).length === 0;
      wanted[from] = true;
      if (first) this.sendSubscribe(cmd.subscribe);
    } else if (cmd.unsubscribe) {
      var holders = this.wanted[cmd.unsubscribe];
      if (holders) delete holders[from];
      if (!holders || Object.keys(holders).length === 0) {
        delete this.wanted[cmd.unsubscribe];
        if (cmd.unsubscribe !== "global") this.send({ type: "unsubscribe", topic: cmd.unsubscribe });
      }
    }
  };

  Client.prototype.sendSubscribe = function (topic) {
    var frame = { type: "subscribe", topic: topic };
    if (this.topicSeqs[topic] !== undefined) frame.since = this.topicSeqs[topic];
    this.send(frame);
  };

  Client.prototype.send = function (frame) {
    if (this.socket && this.socket.readyState === 1 && this.welcomed) {
      this.socket.send(JSON.stringify(frame));
    } else {
      this.queue.push(frame);
    }
  };

  /** Stops for good: this tab's socket (another tab takes over) or its place in the queue. */
  Client.prototype.close = function () {
    if (this.closed && !this.final) return;
    if (this.role === "follower") this.post({ t: "bye", from: this.id });
    this.closed = true;
    this.final = false;
    clearTimeout(this.retryTimer);
    clearTimeout(this.refreshTimer);
    if (this.socket) {
      try {
        this.socket.close(1000, "closed by the page");
      } catch (e) {
        /* already closing */
      }
    }
    if (this.abortLock) this.abortLock.abort();
    if (this.releaseLock) this.releaseLock();
    if (this.channel) this.channel.close();
    this.setStatus("offline", { reason: "closed" });
  };

  // ---- sharing one socket between tabs -----------------------------------------------------

  Client.prototype.startSharing = function () {
    var self = this;
    this.channel = new global.BroadcastChannel(this.channelName);
    this.channel.onmessage = function (event) {
      self.message(event.data);
    };
    this.abortLock = typeof AbortController === "function" ? new AbortController() : null;
    var lockOptions = this.abortLock ? { signal: this.abortLock.signal } : {};
    global.navigator.locks
      .request(this.channelName, lockOptions, function () {
        if (self.closed) return null;
        self.abortLock = null;
        return new Promise(function (release) {
          self.releaseLock = release;
          self.lead();
        });
      })
      .catch(function () {
        /* aborted by close() */
      });
    this.rejoin();
  };

  Client.prototype.post = function (message) {
    if (this.channel && (!this.closed || this.final)) this.channel.postMessage(message);
  };

  /** A follower introduces itself to the leader: its seqs, so the leader can fill its gap. */
  Client.prototype.hello = function () {
    this.post({
      t: "hello",
      from: this.id,
      since: this.seq,
      topics: Object.keys(this.topics),
    });
  };

  Client.prototype.message = function (m) {
    // A leader stopped for good still tells tabs that open later why they are offline.
    if (!m || (this.closed && !this.final)) return;
    if (this.role === "leader") {
      if (m.t === "hello") this.welcomeFollower(m);
      else if (m.t === "cmd") {
        this.runCommand(m.cmd, m.from);
        this.post({ t: "done", to: m.from, cmd: m.cmd });
      } else if (m.t === "bye") this.forget(m.from);
      return;
    }
    if (this.role !== "follower") return;
    // A welcome only starts the count of the tab that opened the socket: a follower learns
    // its place from the leader's answer to its hello.
    if (m.t === "frame") this.frame(m.frame, 0);
    else if (m.t === "status") this.setStatus(m.status, m.detail);
    else if (m.t === "leader") this.rejoin();
    else if (m.t === "done" && m.to === this.id) this.settled(m.cmd);
    else if (m.t === "state" && m.to === this.id) this.joined(m);
  };

  /** A new leader: tell it who we are, and hand it the commands it may not have run. */
  Client.prototype.rejoin = function () {
    this.hello();
    var pending = this.pending.slice();
    for (var i = 0; i < pending.length; i++) {
      this.post({ t: "cmd", from: this.id, cmd: pending[i] });
    }
  };

  Client.prototype.settled = function (cmd) {
    var key = JSON.stringify(cmd);
    for (var i = 0; i < this.pending.length; i++) {
      if (JSON.stringify(this.pending[i]) === key) {
        this.pending.splice(i, 1);
        return;
      }
    }
  };

  /** The leader's answer to our hello: its state, and the recent frames we may lack. */
  Client.prototype.joined = function (m) {
    if (this.seq === null) this.seq = m.seq;
    for (var topic in m.topicSeqs) {
      if (this.topicSeqs[topic] === undefined || this.topicSeqs[topic] < m.topicSeqs[topic]) {
        this.topicSeqs[topic] = m.topicSeqs[topic];
      }
    }
    for (var i = 0; i < m.frames.length; i++) this.frame(m.frames[i], 0);
    this.setUnread(m.unread);
    this.setStatus(m.status, m.detail);
  };

  Client.prototype.welcomeFollower = function (m) {
    for (var i = 0; i < m.topics.length; i++) {
      this.runCommand({ subscribe: m.topics[i] }, m.from);
    }
    // What the socket covers: after `welcome`, everything since `bufferFrom`; before, what
    // it is about to ask for (nothing before the latest seq, when it asks without `since`).
    var covered = this.welcomed ? this.bufferFrom : this.connectingSince;
    if (
      !this.final &&
      typeof m.since === "number" &&
      (typeof covered !== "number" || m.since < covered)
    ) {
      // It has seen less than this socket covers (rendered earlier, or behind when the old
      // leader went): reconnect from its seq; every tab drops what it already has.
      this.resumeFrom = Math.min(m.since, this.resumeFrom === null ? m.since : this.resumeFrom);
      if (this.socket) {
        this.reconnectNow = true;
        this.socket.close(4000, "resume for another tab");
      }
      return;
    }
    this.post({
      t: "state",
      to: m.from,
      seq: this.seq,
      topicSeqs: this.topicSeqs,
      frames: this.buffer,
      unread: this.unread,
      status: this.status,
      detail: this.statusDetail,
    });
  };

  Client.prototype.forget = function (tab) {
    for (var topic in this.wanted) {
      if (this.wanted[topic][tab]) this.runCommand({ unsubscribe: topic }, tab);
    }
  };

  // ---- holding the socket ----------------------------------------------------------------

  /** This tab now holds the socket: alone (solo), or for every tab (leader). */
  Client.prototype.lead = function () {
    var sharing = this.role === "follower";
    this.role = sharing ? "leader" : "solo";
    this.wanted = {};
    this.queue = [];
    this.buffer = [];
    this.bufferFrom = null;
    this.attempt = 0;
    this.tokenFailed = false;
    this.resumeFrom = null;
    this.connectingSince = this.seq;
    this.reconnectNow = false;
    this.welcomed = false;
    this.runCommand({ subscribe: "global" }, this.id);
    for (var topic in this.topics) this.runCommand({ subscribe: topic }, this.id);
    // Commands a follower sent that its old leader may not have run.
    var pending = this.pending || [];
    this.pending = [];
    this.queue = [];
    for (var i = 0; i < pending.length; i++) this.runCommand(pending[i], this.id);
    if (sharing) this.post({ t: "leader", from: this.id });
    this.open();
  };

  /** The token to connect with: a fresh one from the function when needed. */
  Client.prototype.getToken = function (fresh) {
    var source = this.tokenSource;
    if (typeof source !== "function") return Promise.resolve(source || null);
    var exp = this.token ? tokenExpiry(this.token) : null;
    // A token with a little life left is good to connect with: a refresh follows at once.
    if (!fresh && this.token && !this.tokenFailed && (exp === null || exp - now() > 2000)) {
      return Promise.resolve(this.token);
    }
    var self = this;
    return Promise.resolve()
      .then(function () {
        return source();
      })
      .then(function (token) {
        self.token = token || null;
        return self.token;
      });
  };

  Client.prototype.open = function (freshToken) {
    if (this.closed) return;
    var self = this;
    this.setStatus("connecting", { attempt: this.attempt });
    this.getToken(freshToken)
      .then(function (token) {
        if (self.closed) return;
        self.connectWith(token);
      })
      .catch(function (e) {
        self.retry({ reason: "no token: " + (e && e.message ? e.message : e) });
      });
  };

  Client.prototype.connectWith = function (token) {
    var self = this;
    var url = new URL(this.url.href);
    if (token) url.searchParams.set("token", token);
    var since = this.resumeFrom !== null ? this.resumeFrom : this.seq;
    if (this.seq !== null && since !== null) since = Math.min(since, this.seq);
    this.resumeFrom = null;
    this.connectingSince = since;
    if (since !== null) url.searchParams.set("since", String(since));
    var socket = new global.WebSocket(url.href);
    this.socket = socket;
    this.welcomed = false;
    this.openedAt = null;
    socket.onopen = function () {
      self.openedAt = now();
    };
    socket.onmessage = function (event) {
      if (self.socket !== socket) return;
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      self.fromSocket(frame, since, token);
    };
    socket.onclose = function (event) {
      if (self.socket !== socket) return;
      self.socket = null;
      self.welcomed = false;
      clearTimeout(self.refreshTimer);
      if (!self.closed) self.closedBy(event);
    };
  };

  Client.prototype.fromSocket = function (frame, since, token) {
    if (frame.type === "welcome") {
      this.welcomed = true;
      this.tokenFailed = false;
      this.bufferFrom = since !== null ? since : frame.seq;
      this.buffer = [];
      this.scheduleRefresh(token);
    }
    this.frame(frame, since);
    if (frame.type === "notification" || frame.type === "broadcast") {
      this.buffer.push(frame);
      if (this.buffer.length > BUFFER_MAX) {
        var dropped = this.buffer.shift();
        if (dropped.type === "notification") this.bufferFrom = dropped.notification.seq;
      }
    }
    this.post({ t: "frame", frame: frame, since: since });
    if (frame.type === "welcome") {
      this.setStatus("live", { user: frame.user });
      this.flush();
    } else if (frame.type === "error" && frame.code === "invalid_token") {
      this.tokenFailed = true;
    }
  };

  /** After `welcome`: subscriptions (with `since` where we know a seq), then queued commands. */
  Client.prototype.flush = function () {
    var queued = this.queue;
    this.queue = [];
    for (var topic in this.wanted) {
      var frame = { type: "subscribe", topic: topic };
      if (this.topicSeqs[topic] !== undefined) frame.since = this.topicSeqs[topic];
      this.send(frame);
    }
    for (var i = 0; i < queued.length; i++) {
      if (queued[i].type !== "subscribe") this.send(queued[i]);
    }
  };

  /** Sends `refresh` with a new token some time before this one's `exp`. */
  Client.prototype.scheduleRefresh = function (token) {
    clearTimeout(this.refreshTimer);
    if (typeof this.tokenSource !== "function") return;
    var exp = tokenExpiry(token);
    if (exp === null) return;
    var lifetime = exp - now();
    // A third of the lifetime ahead, between 2 s and a minute: time for the site to answer.
    var ahead = Math.min(60000, Math.max(2000, lifetime / 3));
    var self = this;
    this.refreshTimer = setTimeout(function () {
      self
        .getToken(true)
        .then(function (fresh) {
          if (!fresh || !self.welcomed) return;
          self.send({ type: "refresh", token: fresh });
          self.scheduleRefresh(fresh);
        })
        .catch(function () {
          // The site could not give a token now: the server will close with 4001, and we
          // ask again then.
          self.token = null;
        });
    }, Math.max(0, lifetime - ahead));
  };

  Client.prototype.closedBy = function (event) {
    var code = event.code;
    var reason = event.reason || CLOSE_CODES[code] || "closed with " + code;
    var detail = { code: code, reason: reason };
    if (this.openedAt !== null && now() - this.openedAt > STABLE_MS) this.attempt = 0;
    if (this.reconnectNow) {
      this.reconnectNow = false;
      this.open();
      return;
    }
    if (STOP_CODES[code] || (code === 4001 && typeof this.tokenSource !== "function")) {
      // Reconnecting as-is would fail the same way. This tab keeps the lock, so no other
      // tab tries either; they all show "offline" with the reason.
      detail.final = true;
      this.setStatus("offline", detail);
      this.closed = true;
      this.final = true;
      clearTimeout(this.refreshTimer);
      return;
    }
    if (code === 4001) {
      this.token = null;
      if (this.attempt === 0) {
        this.attempt = 1;
        this.setStatus("offline", detail);
        this.open(true);
        return;
      }
    }
    // Refused at the handshake (the browser does not say why): maybe the token, so the next
    // attempt asks the token function again.
    if (this.openedAt === null) this.tokenFailed = true;
    this.retry(detail);
  };

  /** Full jitter: a random wait between 0 and min(cap, base * 2^attempt). */
  Client.prototype.retry = function (detail) {
    if (this.closed) return;
    var ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, this.attempt));
    var wait = Math.floor(Math.random() * ceiling);
    this.attempt += 1;
    detail.retryIn = wait;
    this.setStatus("offline", detail);
    var self = this;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(function () {
      self.open(self.tokenFailed);
    }, wait);
  };

  function connect(options) {
    return new Client(options);
  }

  var informd = { connect: connect, version: "1" };
  global.informd = informd;
})(typeof globalThis !== "undefined" ? globalThis : this);
