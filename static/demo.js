// The demo page's glue: renders what informd.js hands out. No library besides informd.js.
(function () {
  "use strict";
  var boot = JSON.parse(document.getElementById("informd-boot").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var badge = $("badge");
  var list = $("notifications");
  var bell = $("bell");
  var dropdown = $("dropdown");
  var VERBS = { like: "liked", reply: "replied to", follow: "started following you" };

  function hue(text) {
    var h = 0;
    for (var i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) % 360;
    return h;
  }
  function initials(name) {
    return name.split(/\s+/).filter(Boolean).slice(0, 2).map(function (w) { return w[0].toUpperCase(); }).join("");
  }
  function ago(iso) {
    var seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (seconds < 45) return "just now";
    var minutes = Math.round(seconds / 60);
    if (minutes < 60) return minutes === 1 ? "a minute ago" : minutes + " minutes ago";
    var hours = Math.round(minutes / 60);
    if (hours < 24) return hours === 1 ? "an hour ago" : hours + " hours ago";
    var days = Math.round(hours / 24);
    return days === 1 ? "yesterday" : days + " days ago";
  }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Who a notification is from: "Carol, Bob and Alice", or "Carol, Bob and 2 others" when
  // its group stands for more events than it lists actors (as the server renders it).
  function who(n) {
    var names = (n.actors || []).map(function (a) { return (a && (a.name || a.id)) || "?"; });
    if (names.length === 0) return "Someone";
    var count = Math.max(n.count || 1, names.length);
    var parts = names;
    if (count > names.length) {
      parts = names.slice(0, 2);
      var others = count - parts.length;
      parts.push(others === 1 ? "1 other" : others + " others");
    }
    if (parts.length === 1) return parts[0];
    return parts.slice(0, -1).join(", ") + " and " + parts[parts.length - 1];
  }

  function render(n) {
    var actor = n.actor || { id: "?", name: "Someone" };
    var item = el("li", "notification" + (n.read ? "" : " unread"));
    item.dataset.id = n.id;
    item.dataset.seq = n.seq;
    item.dataset.count = n.count || 1;
    var avatar = el("span", "avatar", initials(actor.name || actor.id));
    avatar.style.setProperty("--hue", hue(actor.id || actor.name));
    var body = el("div", "notification-body");
    var text = el("p", "notification-text");
    text.appendChild(el("b", "", who(n)));
    text.appendChild(document.createTextNode(" " + (VERBS[n.kind] || n.kind)));
    if (n.subject && n.subject.title && n.kind !== "follow") {
      text.appendChild(document.createTextNode(" "));
      text.appendChild(el("b", "", n.subject.title));
    }
    body.appendChild(text);
    if (n.data && n.data.excerpt) body.appendChild(el("p", "excerpt", "“" + n.data.excerpt + "”"));
    var time = el("time", "", ago(n.created_at));
    time.setAttribute("datetime", n.created_at);
    body.appendChild(time);
    item.appendChild(avatar);
    item.appendChild(body);
    var dot = el("span", "dot");
    dot.setAttribute("aria-label", "unread");
    item.appendChild(dot);
    return item;
  }

  function showBadge(unread) {
    var before = badge.dataset.count;
    badge.dataset.count = unread;
    badge.textContent = unread > 99 ? "99+" : String(unread);
    badge.classList.toggle("hidden", unread === 0);
    if (unread > Number(before)) {
      badge.classList.remove("bump");
      void badge.offsetWidth;
      badge.classList.add("bump");
    }
    if (unread === 0) {
      list.querySelectorAll(".notification.unread").forEach(function (item) { item.classList.remove("unread"); });
    }
  }

  function toast(title, message) {
    var box = el("div", "toast");
    box.appendChild(el("strong", "", title));
    box.appendChild(document.createTextNode(message));
    $("toasts").appendChild(box);
    setTimeout(function () { box.remove(); }, 8000);
  }

  function freshToken() {
    return fetch("/demo/token?user=" + encodeURIComponent(boot.user))
      .then(function (r) { if (!r.ok) throw new Error("token " + r.status); return r.json(); })
      .then(function (body) { return body.token; });
  }

  var first = true;
  var client = informd.connect({
    url: boot.url,
    since: boot.seq,
    topics: ["article:42"],
    token: function () {
      if (first) { first = false; return boot.token; }
      return freshToken();
    },
  });
  window.demoClient = client;

  // The list again from the inbox, newest first, as the page was rendered.
  function reload() {
    freshToken()
      .then(function (token) {
        return fetch("/api/notifications?limit=20", { headers: { Authorization: "Bearer " + token } });
      })
      .then(function (r) { if (!r.ok) throw new Error("inbox " + r.status); return r.json(); })
      .then(function (page) {
        list.textContent = "";
        page.items.forEach(function (n) { list.appendChild(render(n)); });
        $("empty").hidden = page.items.length > 0;
        showBadge(page.unread);
      })
      .catch(function (e) { console.warn("informd demo: cannot reload the list: " + e); });
  }

  client.on("notification", function (n, unread) {
    // A grouped notification comes again with the same id each time its group grows: it
    // replaces the item it was, at the top.
    var old = list.querySelector('[data-id="' + n.id + '"]');
    if (old) old.remove();
    list.insertBefore(render(n), list.firstChild);
    while (list.children.length > 20) list.lastChild.remove();
    $("empty").hidden = true;
    showBadge(unread);
  });
  client.on("unread", showBadge);
  // More was missed than a replay brings: what the list shows is no longer all there is.
  client.on("resumed", function (r) {
    if (r.stream === "user" && !r.complete) reload();
  });
  client.on("broadcast", function (b) {
    if (b.topic !== "global") return;
    var data = b.data || {};
    toast(data.from ? "Announcement from " + data.from : "Announcement", data.message || "");
  });
  client.on("status", function (status, detail) {
    var node = $("status");
    node.className = "status status-" + status;
    node.textContent = status;
    node.title = detail && detail.reason ? detail.reason : "informd connection";
  });

  bell.addEventListener("click", function () {
    var open = dropdown.hidden;
    dropdown.hidden = !open;
    bell.setAttribute("aria-expanded", String(open));
  });
  document.addEventListener("click", function (event) {
    if (!dropdown.hidden && !event.target.closest(".bell-wrap")) {
      dropdown.hidden = true;
      bell.setAttribute("aria-expanded", "false");
    }
  });
  $("mark-all").addEventListener("click", function () { client.markRead({ all: true }); });
  list.addEventListener("click", function (event) {
    var item = event.target.closest(".notification");
    if (!item || !item.classList.contains("unread")) return;
    item.classList.remove("unread");
    client.markRead({ ids: [Number(item.dataset.id)] });
  });
  setInterval(function () {
    list.querySelectorAll("time").forEach(function (t) { t.textContent = ago(t.getAttribute("datetime")); });
  }, 30000);

  function send(body) {
    return fetch("/demo/send", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }
  document.querySelectorAll(".action[data-kind]").forEach(function (button) {
    button.addEventListener("click", function () {
      send({ as: $("act-as").value, kind: button.dataset.kind, to: boot.user });
    });
  });
  $("announce").addEventListener("click", function () {
    send({ as: $("act-as").value, kind: "announce", message: $("announce-text").value });
  });
})();

// "Mute likes on this post": the user's preferences, read and replaced whole over
// GET/PUT /api/preferences with the visitor's token. Muted likes are neither stored nor pushed.
(function () {
  "use strict";
  var button = document.getElementById("mute-likes");
  if (!button) return;
  var boot = JSON.parse(document.getElementById("informd-boot").textContent);
  var group = button.dataset.group;

  function call(method, body) {
    return fetch("/demo/token?user=" + encodeURIComponent(boot.user))
      .then(function (r) { if (!r.ok) throw new Error("token " + r.status); return r.json(); })
      .then(function (t) {
        return fetch("/api/preferences", {
          method: method,
          headers: { "Authorization": "Bearer " + t.token, "Content-Type": "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      })
      .then(function (r) { if (!r.ok) throw new Error("preferences " + r.status); return r.json(); });
  }
  function show(muted) {
    button.setAttribute("aria-pressed", String(muted));
    button.textContent = muted ? "Unmute likes on this post" : "Mute likes on this post";
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    call("GET")
      .then(function (prefs) {
        var groups = (prefs.muted_groups || []).filter(function (g) { return g !== group; });
        if (button.getAttribute("aria-pressed") !== "true") groups.push(group);
        prefs.muted_groups = groups;
        return call("PUT", prefs);
      })
      .then(function (prefs) { show(prefs.muted_groups.indexOf(group) >= 0); })
      .catch(function (e) { button.title = String(e && e.message ? e.message : e); })
      .then(function () { button.disabled = false; });
  });
})();
