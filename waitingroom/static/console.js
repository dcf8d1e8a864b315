// The operator console (waitingroom/console.py): sign in, read the live stream with fetch() (an
// EventSource cannot send the Authorization header), draw figures and sparklines, confirm controls.
"use strict";
(function () {
  const KEY = "surgegate.console.key";
  const SPAN_MS = 15 * 60 * 1000;
  const FIGURES = [
    ["joined", "Joined", true], ["waiting", "Waiting", true], ["admitted", "Admitted", true],
    ["active", "Active (admitted, unused)", true], ["used", "Used (booked)", false],
    ["expired_unused", "Expired unused", false], ["rate", "Rate configured / actual", false],
    ["wait", "Time in queue p50 / p90", false], ["tail", "Last in line waits", false],
    ["booked", "Booked (confirmed)", false], ["slot_full", "Refused: slot full", false],
    ["ineligible", "Refused: ineligible", false], ["other_refusals", "Other refusals", false],
    ["latency", "Booking latency p50 / p99 (5 min)", false], ["queue_depth", "Booking queue depth", false],
    ["invites", "Invites issued / used / open", false],
    ["token_failures", "Token failures (15 min)", "series"],
  ];
  const $ = (id) => document.getElementById(id);
  const cards = new Map(); // event_id -> {root, fields, trend}
  let stream = null;

  function notice(text) { $("notice").textContent = text; }
  function credential() { return sessionStorage.getItem(KEY); }
  function auth() { return { Authorization: "Bearer " + credential() }; }

  function signedIn(on) {
    $("signin").hidden = on;
    $("board").hidden = !on;
    $("signout").hidden = !on;
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    if (stream) stream.abort();
    stream = null;
    cards.clear();
    $("events").textContent = "";
    signedIn(false);
    notice(message || "");
    $("key").focus();
  }

  async function problem(resp) {
    try { const body = await resp.json(); return body.code + ": " + body.detail; } catch (e) { return "HTTP " + resp.status; }
  }

  // --- the live stream ---------------------------------------------------------------------------
  async function connect() {
    stream = new AbortController();
    const mine = stream;
    try {
      const resp = await fetch("/admin/v1/live", { headers: auth(), signal: mine.signal, cache: "no-store" });
      if (resp.status === 401 || resp.status === 403) { signOut("Sign-in refused: " + (await problem(resp))); return; }
      if (!resp.ok) throw new Error(await problem(resp));
      $("live-state").textContent = "Live";
      if ($("notice").textContent.endsWith("reconnecting…")) notice("");
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let kind = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) kind = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (kind === "stats") { render(JSON.parse(data)); $("live-state").textContent = "Live"; }
          if (kind === "unavailable") $("live-state").textContent = "Figures unavailable: " + JSON.parse(data).detail;
          if (kind === "signed_out") { signOut("Signed out: " + JSON.parse(data).detail); return; }
          if (kind === "closing") { notice("The server is restarting; reconnecting…"); break; }
        }
      }
    } catch (e) {
      if (mine.signal.aborted) return;
      notice("Connection lost (" + e.message + "); reconnecting…");
    }
    if (mine !== stream || !credential()) return;
    $("live-state").textContent = "Reconnecting…";
    setTimeout(() => { if (mine === stream && credential()) connect(); }, 2000);
  }

  // --- rendering ---------------------------------------------------------------------------------
  function text(value, unit) { return value === null || value === undefined ? "–" : value + (unit || ""); }

  function values(event) {
    const s = event.stats;
    return {
      joined: s.joined, waiting: s.waiting, admitted: s.admitted, active: s.active, used: s.used,
      expired_unused: s.expired_unused,
      rate: text(s.rate_per_s.configured) + " / " + text(s.rate_per_s.actual_last_60s),
      wait: text(s.time_in_queue_s.median, " s") + " / " + text(s.time_in_queue_s.p90, " s"),
      tail: text(s.tail_eta_s, " s"),
      ...bookingValues(event.booking),
    };
  }

  function bookingValues(b) {
    if (!b) return {};
    const other = Object.entries(b.refusals)
      .filter(([code]) => code !== "slot_full" && code !== "ineligible")
      .map(([code, n]) => code + " " + n);
    return {
      booked: b.booked, slot_full: b.slot_full, ineligible: b.ineligible,
      other_refusals: other.length ? other.join(", ") : "0",
      latency: text(b.latency_s.p50, " s") + " / " + text(b.latency_s.p99, " s"),
      queue_depth: b.queue_depth,
      invites: b.invites.issued + " / " + b.invites.used + " / " + b.invites.open,
      token_failures: failures(b.token_failures),
    };
  }

  // "7: expired 5, binding 2": the total over the window, then each reason
  function failures(f) {
    if (!f) return "–";
    const reasons = Object.entries(f.by_reason).map(([reason, n]) => reason + " " + n);
    return reasons.length ? f.total + ": " + reasons.join(", ") : "0";
  }

  function ageText(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 120) return Math.round(seconds) + " s";
    if (seconds < 7200) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  function sparkline(svg, points, name) {
    const NS = "http://www.w3.org/2000/svg";
    svg.textContent = "";
    if (points.length < 2) return;
    const t0 = points[0].at, t1 = points[points.length - 1].at;
    const max = Math.max(1, ...points.map((p) => p[name]));
    const coords = points.map((p) => {
      const x = t1 > t0 ? ((p.at - t0) / (t1 - t0)) * 100 : 0;
      return x.toFixed(1) + "," + (28 - (p[name] / max) * 26).toFixed(1);
    });
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", coords.join(" "));
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.appendChild(line);
  }

  // counts per minute, oldest first, evenly spaced
  function seriesSparkline(svg, counts) {
    sparkline(svg, (counts || []).map((n, i) => ({ at: i, n })), "n");
  }

  function renderGlobal(message) {
    const unknown = message.token_failures_unknown_event;
    $("fig-unknown-failures").textContent = failures(unknown);
    seriesSparkline($("spark-unknown-failures"), unknown && unknown.per_minute);
    const backlog = message.notifications;
    $("fig-notifications-due").textContent = backlog ? String(backlog.due) : "–";
    $("fig-notifications-oldest").textContent = backlog ? ageText(backlog.oldest_due_age_s) : "–";
  }

  function card(event) {
    let c = cards.get(event.event_id);
    if (c) return c;
    const root = $("event-card").content.firstElementChild.cloneNode(true);
    root.id = "event-" + event.event_id;
    root.querySelector(".id").textContent = event.event_id;
    const fields = {};
    const dl = root.querySelector(".figures");
    for (const [name, label, spark] of FIGURES) {
      const box = document.createElement("div");
      const dt = document.createElement("dt"); dt.textContent = label;
      const dd = document.createElement("dd"); dd.className = "fig-" + name;
      box.append(dt, dd);
      let svg = null;
      if (spark) {
        svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
        svg.setAttribute("viewBox", "0 0 100 30");
        svg.setAttribute("preserveAspectRatio", "none");
        svg.setAttribute("role", "img");
        svg.setAttribute("aria-label", label + ", last 15 minutes");
        svg.classList.add("spark-" + name);
        if (spark === "series") svg.setAttribute("aria-label", label + ", per minute");
        box.appendChild(svg);
      }
      dl.appendChild(box);
      fields[name] = { dd, svg };
    }
    c = { root, fields, trend: [], event };
    wire(c);
    cards.set(event.event_id, c);
    $("events").appendChild(root);
    return c;
  }

  function render(message) {
    renderGlobal(message);
    const seen = new Set();
    for (const event of message.events) {
      seen.add(event.event_id);
      const c = card(event);
      c.event = event;
      if (event.trend && event.trend.length) c.trend = event.trend.slice();
      const s = event.stats;
      c.trend.push({ at: message.at, joined: s.joined, admitted: s.admitted, waiting: s.waiting, active: s.active });
      while (c.trend.length && message.at * 1000 - c.trend[0].at * 1000 > SPAN_MS) c.trend.shift();
      c.root.querySelector(".name").textContent = event.name;
      const badge = c.root.querySelector(".badge");
      badge.textContent = event.bookings_frozen ? "bookings frozen" : event.paused ? "paused" : event.phase;
      badge.className = "badge" + (event.bookings_frozen ? " frozen" : event.paused ? " paused" : "");
      const v = values(event);
      for (const [name, f] of Object.entries(c.fields)) {
        f.dd.textContent = String(v[name]);
        if (f.svg && name === "token_failures") seriesSparkline(f.svg, event.booking && event.booking.token_failures.per_minute);
        else if (f.svg) sparkline(f.svg, c.trend, name);
      }
      c.root.querySelector(".pause").textContent = event.paused ? "Resume admissions" : "Pause admissions";
      c.root.querySelector(".freeze button").textContent = event.bookings_frozen ? "Lift the freeze" : "Freeze bookings";
      c.root.querySelector(".freeze label").hidden = event.bookings_frozen;
      const reason = c.root.querySelector(".reason");
      reason.hidden = !event.bookings_frozen;
      reason.textContent = "Bookings frozen" + (event.freeze_reason ? ": " + event.freeze_reason : "") +
        ". Nobody is admitted; the booking API refuses new bookings (503 bookings_frozen).";
      c.root.querySelector(".mode").textContent = event.rate_mode === "auto"
        ? "Rate: auto, between " + event.rate_min + " and " + event.rate_max + "/s"
        : "Rate: fixed, " + event.rate_per_s + "/s";
      const rate = c.root.querySelector(".rate input");
      if (document.activeElement !== rate && !rate.value) rate.placeholder = String(event.rate_per_s);
    }
    for (const [id, c] of cards) if (!seen.has(id)) { c.root.remove(); cards.delete(id); }
    if (!message.events.length) $("events").textContent = "No open event.";
  }

  // --- controls ----------------------------------------------------------------------------------
  function confirmThen(question) {
    const dialog = $("confirm");
    $("confirm-text").textContent = question;
    dialog.returnValue = "";
    dialog.showModal();
    $("confirm-cancel").focus(); // the safe choice has the focus: Enter does not confirm by accident
    return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
  }

  async function change(c, question, body, done) {
    if (!(await confirmThen(question))) { notice("Cancelled: nothing changed."); return; }
    const resp = await fetch("/admin/v1/events/" + encodeURIComponent(c.event.event_id), {
      method: "PUT", headers: { ...auth(), "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (resp.ok) notice(done + ".");
    else notice("Refused: " + (await problem(resp)));
    loadActions();
  }

  function wire(c) {
    const q = (sel) => c.root.querySelector(sel);
    q(".pause").addEventListener("click", () => {
      const pause = !c.event.paused;
      const id = c.event.event_id;
      change(c, (pause ? "Pause admissions of " : "Resume admissions of ") + id + "?", { paused: pause },
        (pause ? "Paused admissions of " : "Resumed admissions of ") + id);
    });
    q(".rate").addEventListener("submit", (e) => {
      e.preventDefault();
      const rate = Number(q(".rate input").value);
      change(c, "Set the rate of " + c.event.event_id + " to " + rate + "/s (fixed)?", { rate_per_s: rate, rate_mode: "fixed" },
        "Rate of " + c.event.event_id + " set to " + rate + "/s");
      q(".rate input").value = "";
    });
    q(".bounds").addEventListener("submit", (e) => {
      e.preventDefault();
      const min = Number(q(".bounds [name=min]").value), max = Number(q(".bounds [name=max]").value);
      change(c, "Steer " + c.event.event_id + " automatically between " + min + " and " + max + "/s?",
        { rate_mode: "auto", rate_min: min, rate_max: max }, c.event.event_id + " steers its rate between " + min + " and " + max + "/s");
    });
    q(".freeze").addEventListener("submit", (e) => {
      e.preventDefault();
      if (c.event.bookings_frozen) {
        change(c, "Lift the freeze of " + c.event.event_id + " (admissions and bookings resume)?", { bookings_frozen: false },
          "Lifted the freeze of " + c.event.event_id);
        return;
      }
      const reason = q(".freeze input").value.trim();
      change(c, "Freeze bookings of " + c.event.event_id + "? Nobody is admitted and new bookings are refused.",
        reason ? { bookings_frozen: true, freeze_reason: reason } : { bookings_frozen: true }, "Froze bookings of " + c.event.event_id);
      q(".freeze input").value = "";
    });
  }

  async function loadActions() {
    if (!credential()) return;
    const resp = await fetch("/admin/v1/actions?limit=20", { headers: auth(), cache: "no-store" });
    if (!resp.ok) return;
    const list = $("actions");
    list.textContent = "";
    for (const a of (await resp.json()).actions) {
      const li = document.createElement("li");
      li.textContent = a.at.slice(0, 19).replace("T", " ") + " UTC · " + a.actor + " · " + a.action + " " +
        (a.event_id || "") + " " + JSON.stringify(a.detail);
      list.appendChild(li);
    }
    if (!list.children.length) list.textContent = "Nothing yet.";
  }

  function start() {
    signedIn(true);
    notice("");
    connect();
    loadActions();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin").addEventListener("submit", (e) => {
      e.preventDefault();
      sessionStorage.setItem(KEY, $("key").value.trim());
      $("key").value = "";
      start();
    });
    $("signout").addEventListener("click", () => signOut("Signed out."));
    setInterval(loadActions, 10000);
    if (credential()) start(); else signedIn(false);
  });
})();
