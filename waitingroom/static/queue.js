// The queue page, enhanced: join, poll as told by poll_after_ms, count down, then book through the
// booking API. Every word comes from the server's catalog (#strings), in the page's language.
(function () {
  "use strict";
  var T = JSON.parse(document.getElementById("strings").textContent);
  var eventId = document.body.dataset.eventId;
  var base = "/api/v1/events/" + encodeURIComponent(eventId);
  var firstPosition = null, admission = null, countdown = null, last = null;
  var $ = function (id) { return document.getElementById(id); };
  var fill = function (text, values) {
    return text.replace(/\{(\w+)\}/g, function (_, k) { return values[k]; });
  };

  function showError(text) { var e = $("error"); e.textContent = text || ""; e.hidden = !text; }

  function duration(s) {  // same units as the server's i18n.duration
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    var m = Math.floor(s % 3600 / 60);
    return Math.floor(s / 3600) + " h " + (m < 10 ? "0" : "") + m + " min";
  }

  function etaText(eta) {  // same range as the server's i18n.eta_minutes
    if (eta === null || eta === undefined) return T.eta_paused;
    if (eta < 60) return T.eta_less_minute;
    return fill(T.eta_range, { lo: Math.max(1, Math.floor(eta * 0.8 / 60)), hi: Math.max(2, Math.ceil(eta * 1.25 / 60)) });
  }

  function tickCountdown() {
    if (!last || last.state !== "prequeue" || !last.opens_at) return;
    $("eta").textContent = fill(T.opens_in, { time: duration((new Date(last.opens_at) - Date.now()) / 1000) });
  }

  function render(st) {
    var announce = !last || last.state !== st.state;  // only state changes go to aria-live
    last = st;
    var state = $("state");
    if (announce) state.textContent = T["state_" + st.state] || st.state;
    var waiting = st.state === "waiting";
    $("position").textContent = waiting ? String(st.position) : (st.state === "admitted" ? "0" : T.blank);
    $("ahead").textContent = waiting ? String(Math.max(0, st.position - 1)) : (st.state === "admitted" ? "0" : T.blank);
    $("note").textContent = st.state === "prequeue" ? T.lottery : "";
    $("hint").textContent = (waiting || st.state === "prequeue") ? T.keep_open : "";
    if (st.state === "prequeue") {
      tickCountdown();
      if (!countdown) countdown = setInterval(tickCountdown, 1000);
    } else {
      if (countdown) { clearInterval(countdown); countdown = null; }
      $("eta").textContent = st.state === "admitted" ? T.blank : (waiting ? etaText(st.eta_seconds) : T.blank);
    }
    if (waiting && firstPosition === null) firstPosition = Math.max(st.position, 1);
    var pct = st.state === "admitted" ? 100 : (waiting && firstPosition ? Math.round(100 * (1 - st.position / (firstPosition + 1))) : 0);
    $("bar-fill").style.width = pct + "%";
    document.querySelector(".bar").setAttribute("aria-valuenow", String(pct));
    $("join-form").hidden = st.state !== "expired";
    if (st.state === "expired") $("join").textContent = T.rejoin;
  }

  function schedule(ms) { setTimeout(poll, Math.max(250, ms)); }

  function poll() {
    fetch(base + "/status", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json().then(function (b) { return [r, b]; }); })
      .then(function (rb) {
        var r = rb[0], st = rb[1];
        if (r.status === 401) return join();
        if (r.status === 410) return showError(st.detail || T.error_generic);  // the event has closed
        if (!r.ok) { showError(st.detail || T.error_generic); return schedule(5000); }
        showError("");
        render(st);
        if (st.state === "admitted") return admitted(st);
        if (st.state !== "expired") schedule(st.poll_after_ms);
      })
      .catch(function () { showError(T.error_connection); schedule(5000); });
  }

  // The admission is bound to this browser: a secret that never leaves it, only its hash does.
  function deviceSecret() {
    var name = "sg_device_" + eventId, secret = null;
    try { secret = localStorage.getItem(name); } catch (e) { /* storage off: an unbound admission */ }
    if (!secret) {
      var bytes = new Uint8Array(32);
      crypto.getRandomValues(bytes);
      secret = Array.prototype.map.call(bytes, function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
      try { localStorage.setItem(name, secret); } catch (e) { return null; }
    }
    return secret;
  }

  function sha256hex(text) {
    return crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)).then(function (d) {
      return Array.prototype.map.call(new Uint8Array(d), function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
    });
  }

  function proofOfWork() {  // solved off the main thread, so the page stays responsive
    var bits = parseInt(document.body.dataset.pow || "0", 10);
    if (!bits) return Promise.resolve(null);
    $("state").textContent = T.working;
    return fetch(base + "/challenge", { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (c) {
      return new Promise(function (resolve) {
        var worker = new Worker("/static/pow-worker.js");
        worker.onmessage = function (m) { worker.terminate(); resolve({ challenge: c.challenge, solution: m.data }); };
        worker.postMessage({ challenge: c.challenge, difficulty: c.difficulty });
      });
    });
  }

  function join() {
    if (document.body.dataset.onePlace === "true") { $("join-form").hidden = false; return; }
    var secret = deviceSecret();
    Promise.all([proofOfWork(), secret && window.crypto && crypto.subtle ? sha256hex(secret) : null]).then(function (r) {
      var body = {};
      if (r[0]) body.pow = r[0];
      if (r[1]) body.device_key_hash = r[1];
      $("state").textContent = T.state_joining;
      return fetch(base + "/join", { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    })
      .then(function (r) { return r.json().then(function (b) { return [r, b]; }); })
      .then(function (rb) {
        var r = rb[0], st = rb[1];
        if (!r.ok) {
          showError(st.detail || T.error_generic);
          var retry = parseInt(r.headers.get("Retry-After") || "0", 10);
          if (retry) schedule(retry * 1000);
          return;
        }
        showError("");
        render(st);
        schedule(st.poll_after_ms);
      })
      .catch(function () { showError(T.error_connection); schedule(5000); });
  }

  // --- booking --------------------------------------------------------------------------------
  function api(path, opts) {
    opts = opts || {};
    var headers = { "Authorization": "Bearer " + admission.admission_token };
    var secret = deviceSecret();
    if (secret) headers["X-Device-Key"] = secret;
    opts.headers = Object.assign(headers, opts.headers || {});
    return fetch(admission.booking_url + path, opts).then(function (r) {
      return r.json().then(function (b) { if (!r.ok) { var e = new Error(b.detail || b.code); e.body = b; throw e; } return b; });
    });
  }

  function option(value, text) { var o = document.createElement("option"); o.value = value; o.textContent = text; return o; }

  function loadSlots() {
    var now = new Date(), to = new Date(now.getTime() + 8 * 86400000);
    var q = "?site_id=" + encodeURIComponent($("site").value) + "&from=" + encodeURIComponent(now.toISOString()) +
            "&to=" + encodeURIComponent(to.toISOString());
    return api("/slots" + q).then(function (b) {
      var sel = $("slot"); sel.innerHTML = "";
      b.slots.filter(function (s) { return s.remaining > 0; }).forEach(function (s) {
        sel.appendChild(option(s.slot_id, s.local_starts_at.replace("T", " ").slice(0, 16) + " (" + fill(T.seats_left, { n: s.remaining }) + ")"));
      });
    });
  }

  function admitted(st) {
    if (admission) return;
    admission = st;
    document.dispatchEvent(new CustomEvent("sg:admitted", { detail: st }));  // issue 10: eligibility.js
    $("booking").hidden = false;
    $("expires").textContent = fill(T.book_before, { time: new Date(st.admission_expires_at).toLocaleTimeString(document.documentElement.lang) });
    api("/sites").then(function (b) {
      var sel = $("site"); sel.innerHTML = "";
      b.sites.forEach(function (s) { sel.appendChild(option(s.site_id, s.name + " (" + s.region + ")")); });
      return loadSlots();
    }).catch(function (e) { showError(e.message); });
    $("site").addEventListener("change", function () { loadSlots().catch(function (e) { showError(e.message); }); });
    var key = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now()) + Math.random();
    $("book-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var gate = window.sgEligibility;  // issue 10: eligibility.js, when the event has published rules
      if (gate && !gate.eligible()) return showError(gate.blockedText());
      $("book").disabled = true;
      showError("");
      api("/appointments", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": key },
        body: JSON.stringify(Object.assign({ slot_id: $("slot").value, person: {
          id_number: $("id_number").value, name: $("name").value, email: $("email").value,
          birth_date: $("birth_date").value } }, gate ? gate.bookingFields() : {}))  // issue 10: decision_id
      }).then(function (b) {
        if (b.status === "pending") return waitAttempt(b.attempt_id);
        confirmed(b);
      }).catch(function (e) { showError(e.message); $("book").disabled = false; });
    });
  }

  function waitAttempt(id) {
    return api("/attempts/" + encodeURIComponent(id)).then(function (a) {
      if (a.status === "pending") return new Promise(function (res) { setTimeout(res, 1000); }).then(function () { return waitAttempt(id); });
      if (a.status === "confirmed") return api("/appointments/" + a.appointment_id).then(confirmed);
      throw new Error(a.code || "rejected");
    });
  }

  function confirmed(b) {
    $("booking").hidden = true;
    $("done").hidden = false;
    $("confirmation").textContent = fill(T.confirmation, { id: b.appointment_id, time: b.local_starts_at.replace("T", " ").slice(0, 16) });
  }

  // An invite link (/e/EVENT/invite#TOKEN, waitingroom/invites.py): the token rides in the fragment,
  // which no browser sends to a server; it is posted once to be traded for an admission, skipping the queue.
  function redeem(token) {
    history.replaceState(null, "", location.pathname);  // the token leaves the address bar and history
    var secret = deviceSecret();
    Promise.resolve(secret && window.crypto && crypto.subtle ? sha256hex(secret) : null).then(function (hash) {
      var body = { invite: token };
      if (hash) body.device_key_hash = hash;
      return fetch(base + "/invites:redeem", { method: "POST", credentials: "same-origin", cache: "no-store",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    })
      .then(function (r) { return r.json().then(function (b) { return [r, b]; }); })
      .then(function (rb) {
        if (!rb[0].ok) return showError(rb[1].detail || T.error_generic);
        showError("");
        var st = Object.assign({ position: 0, eta_seconds: 0 }, rb[1]);
        render(st);
        admitted(st);
      })
      .catch(function () { showError(T.error_connection); });
  }

  $("join-form").hidden = true;  // with JavaScript the page joins by itself
  var invite = /\/invite$/.test(location.pathname) && location.hash.length > 1 ? location.hash.slice(1) : null;
  if (invite) redeem(invite); else poll();
})();
