// The queue page, enhanced: join, poll as told by poll_after_ms, count down, book through the
// booking API, then show the confirmation (also on every reload: the edge's status carries what the
// admission booked). Every word comes from the server's catalog (#strings), in the page's language.
// Screen readers hear state changes only (#announce) and focus moves to each new state's heading;
// figures and countdowns change silently.
(function () {
  "use strict";
  var T = JSON.parse(document.getElementById("strings").textContent);
  var eventId = document.body.dataset.eventId;
  var apiBase = document.body.dataset.api;
  var lang = document.documentElement.lang;
  var base = "/api/v1/events/" + encodeURIComponent(eventId);
  var firstPosition = null, admission = null, countdown = null, ticker = null, last = null;
  var view = document.body.dataset.state;  // the state the server rendered: not announced again
  var skew = 0, warned = false, sites = [];
  var $ = function (id) { return document.getElementById(id); };
  var fill = function (text, values) {
    return text.replace(/\{(\w+)\}/g, function (_, k) { return values[k]; });
  };

  function showError(text) { var e = $("error"); e.textContent = text || ""; e.hidden = !text; }
  function problemText(body) { return (body && (T["code_" + body.code] || body.detail)) || T.error_generic; }
  function now() { return Date.now() + skew; }  // the server's clock, as its Date header tells it

  function duration(s) {  // same units as the server's i18n.duration
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    var m = Math.floor(s % 3600 / 60);
    return Math.floor(s / 3600) + " h " + (m < 10 ? "0" : "") + m + " min";
  }

  function clock(s) { s = Math.max(0, Math.ceil(s)); var r = s % 60; return Math.floor(s / 60) + ":" + (r < 10 ? "0" : "") + r; }

  function etaText(eta) {  // same range as the server's i18n.eta_minutes
    if (eta === null || eta === undefined) return T.eta_paused;
    if (eta < 60) return T.eta_less_minute;
    return fill(T.eta_range, { lo: Math.max(1, Math.floor(eta * 0.8 / 60)), hi: Math.max(2, Math.ceil(eta * 1.25 / 60)) });
  }

  function updated() { $("updated").textContent = fill(T.last_updated, { time: new Date().toLocaleTimeString(lang) }); }

  // A new state: say it once (aria-live) and move focus to its heading; the same state again is silent.
  var HEADINGS = { admitted: "book-heading", booked: "done-heading" };
  function enter(state) {
    if (state === view) return;
    view = state;
    document.body.dataset.state = state;
    var said = T["announce_" + state];
    if (said) $("announce").textContent = said;
    var heading = $(HEADINGS[state] || "state");
    if (heading && heading.offsetParent !== null) heading.focus();
  }

  function tickCountdown() {  // the pre-queue's countdown: silent (#eta is not a live region)
    if (!last || last.state !== "prequeue" || !last.opens_at) return;
    $("eta").textContent = fill(T.opens_in, { time: duration((new Date(last.opens_at) - now()) / 1000) });
  }

  function render(st) {
    if (st.appointment) return showBooked(st.appointment, st);
    last = st;
    $("queue").hidden = false;
    $("state").textContent = T["state_" + st.state] || st.state;
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
    if (st.state !== "admitted") enter(st.state);  // admitted: once the booking form shows (admitted())
  }

  function closed(body) {  // the event has closed: say so and stop, instead of "Joining…" forever
    if (countdown) { clearInterval(countdown); countdown = null; }
    $("state").textContent = T.state_closed;
    $("join-form").hidden = true;
    $("hint").textContent = "";
    $("booking").hidden = true;
    showError(problemText(body));
    enter("closed");
  }

  function schedule(ms) { setTimeout(poll, Math.max(250, ms)); }

  function readStatus() {
    return fetch(base + "/status", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        var date = Date.parse(r.headers.get("Date") || "");
        if (!isNaN(date)) skew = date - Date.now();
        return r.json().then(function (b) { return [r, b]; });
      });
  }

  function poll() {
    readStatus().then(function (rb) {
      var r = rb[0], st = rb[1];
      if (r.status === 401) return join();
      if (r.status === 410) return closed(st);
      if (!r.ok) { showError(problemText(st)); return schedule(5000); }
      showError("");
      updated();
      render(st);
      if (st.appointment) return;
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
        if (r.status === 410 || r.status === 404) return closed(st);
        if (!r.ok) {
          showError(problemText(st));
          var retry = parseInt(r.headers.get("Retry-After") || "0", 10);
          if (retry) schedule(retry * 1000);
          return;
        }
        showError("");
        updated();
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
      return r.json().then(function (b) { if (!r.ok) { var e = new Error(problemText(b)); e.body = b; throw e; } return b; });
    });
  }

  function failed(e) {  // a refused call: the lapsed turn, the fields, or the refusal's own words
    var body = e.body || {};
    if (body.code === "token_expired") return lapse();
    if (body.code === "admission_used") return afterBooking({});
    markFields(body.errors || []);
    showError(e.body ? problemText(body) : T.error_connection);
    $("book").disabled = false;
  }

  function option(value, text) { var o = document.createElement("option"); o.value = value; o.textContent = text; return o; }

  function zoneName(tz, at) {  // "Central European Standard Time (Europe/Berlin)", where Intl knows it
    try {
      var part = new Intl.DateTimeFormat(lang, { timeZone: tz, timeZoneName: "long" }).formatToParts(at)
        .filter(function (p) { return p.type === "timeZoneName"; })[0];
      return part ? part.value + " (" + tz + ")" : tz;
    } catch (e) { return tz; }
  }

  function dayLabel(at, tz) {
    return new Intl.DateTimeFormat(lang, { weekday: "long", day: "numeric", month: "long", timeZone: tz }).format(at);
  }

  function fillSites(list) {  // in the API's order: by name, or nearest first (then the nearest is chosen)
    sites = list;
    var sel = $("site"); sel.innerHTML = "";
    list.forEach(function (s) {
      var far = s.distance_km === null || s.distance_km === undefined ? "" : " — " + fill(T.distance, { km: s.distance_km.toFixed(1) });
      sel.appendChild(option(s.site_id, s.name + " (" + s.region + ")" + far));
    });
  }

  function site() { var id = $("site").value; return sites.filter(function (s) { return s.site_id === id; })[0]; }

  // Times by day, in the site's zone. The window is the API's longest (31 days); the booking API
  // offers only what each appointment type's booking window (max_advance) allows within it.
  function loadSlots() {
    var start = new Date(now()), to = new Date(start.getTime() + 31 * 86400000);
    var q = "?site_id=" + encodeURIComponent($("site").value) + "&from=" + encodeURIComponent(start.toISOString()) +
            "&to=" + encodeURIComponent(to.toISOString()) + "&available=true";
    return api("/slots" + q).then(function (b) {
      var sel = $("slot"), groups = {}, s = site(), tz = s ? s.timezone : "UTC";
      sel.innerHTML = "";
      b.slots.filter(function (x) { return x.remaining > 0; }).forEach(function (x) {
        var day = x.local_starts_at.slice(0, 10), group = groups[day];
        if (!group) {
          group = groups[day] = document.createElement("optgroup");
          group.label = dayLabel(new Date(x.starts_at), x.timezone);
          sel.appendChild(group);
        }
        group.appendChild(option(x.slot_id, x.local_starts_at.slice(11, 16) + " (" + fill(T.seats_left, { n: x.remaining }) + ")"));
        tz = x.timezone;
      });
      var none = sel.options.length === 0;
      $("no-slots").hidden = !none;
      $("book").disabled = none;
      $("zone-note").textContent = fill(T.zone_note, { zone: zoneName(tz, new Date(now())) });
    });
  }

  function loadSites(position) {
    var q = position ? "?lat=" + position.coords.latitude + "&lng=" + position.coords.longitude : "";
    return api("/sites" + q).then(function (b) { fillSites(b.sites); return loadSlots(); });
  }

  function nearMe() {  // only when asked: the location goes to the booking API as a query, never stored
    var note = $("near-me-note");
    if (!navigator.geolocation) { note.textContent = T.near_me_denied; note.hidden = false; return; }
    navigator.geolocation.getCurrentPosition(function (position) {
      note.hidden = true;
      loadSites(position).catch(failed);
    }, function () { note.textContent = T.near_me_denied; note.hidden = false; }, { timeout: 10000, maximumAge: 600000 });
  }

  // --- the admission's remaining time ----------------------------------------------------------
  function tickAdmission() {
    if (!admission) return;
    var left = (Date.parse(admission.admission_expires_at) - now()) / 1000;
    if (left <= 0) return lapse();
    $("expires").textContent = fill(T.time_left, { time: clock(left) });
    if (left <= 60 && !warned) {  // once, as an alert: the only second of the countdown that is read out
      warned = true;
      $("expiry-warning").textContent = T.time_warning;
      $("expiry-warning").hidden = false;
    }
  }

  function lapse() {  // the turn has expired: say so plainly and offer to join again
    if (ticker) { clearInterval(ticker); ticker = null; }
    admission = null;
    $("booking").hidden = true;
    $("expiry-warning").hidden = true;
    showError("");
    render({ state: "expired", position: null, eta_seconds: null });
  }

  // --- fields -----------------------------------------------------------------------------------
  var FIELDS = ["id_number", "name", "email", "birth_date"];

  function clearFields() {
    FIELDS.concat(["slot"]).forEach(function (id) {
      $(id).removeAttribute("aria-invalid");
      $(id + "-error").hidden = true;
      $(id + "-error").textContent = "";
    });
  }

  function fieldMessage(field, type) {
    if (field === "slot") return T.err_slot;
    var label = T[field];
    if (type === "missing") return fill(T.err_missing, { field: label });
    if (field === "email" || field === "birth_date") return fill(T["err_" + field], { field: label });
    return fill(T.err_invalid, { field: label });
  }

  function markFields(errors) {  // the server's errors[] (or the page's own check): each field marked
    var first = null;
    errors.forEach(function (err) {
      var loc = err.loc || [], name = String(loc[loc.length - 1]);
      var field = (name === "slot_id" || name === "hold_id") ? "slot" : (FIELDS.indexOf(name) >= 0 ? name : null);
      if (!field) return;
      $(field).setAttribute("aria-invalid", "true");
      $(field + "-error").textContent = fieldMessage(field, err.type);
      $(field + "-error").hidden = false;
      first = first || field;
    });
    if (first) $(first).focus();
    return first !== null;
  }

  function missing() {
    var errors = [];
    if (!$("slot").value) errors.push({ loc: ["slot_id"], type: "missing" });
    FIELDS.forEach(function (id) { if (!$(id).value.trim()) errors.push({ loc: ["person", id], type: "missing" }); });
    return errors;
  }

  function admitted(st) {
    if (admission) return;
    admission = st;
    document.dispatchEvent(new CustomEvent("sg:admitted", { detail: st }));  // issue 10: eligibility.js
    $("booking").hidden = false;
    $("queue").hidden = true;
    enter("admitted");
    tickAdmission();
    ticker = setInterval(tickAdmission, 1000);
    loadSites(null).catch(failed);
    $("site").addEventListener("change", function () { loadSlots().catch(failed); });
    $("near-me").addEventListener("click", nearMe);
    var key = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now()) + Math.random();
    $("book-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearFields();
      showError("");
      var errors = missing();
      if (errors.length) { markFields(errors); return showError(T.code_validation_error); }
      var gate = window.sgEligibility;  // issue 10: eligibility.js, when the event has published rules
      if (gate && !gate.eligible()) return showError(gate.blockedText());
      $("book").disabled = true;
      api("/appointments", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": key },
        body: JSON.stringify(Object.assign({ slot_id: $("slot").value, language: lang, person: {
          id_number: $("id_number").value, name: $("name").value, email: $("email").value,
          birth_date: $("birth_date").value } }, gate ? gate.bookingFields() : {}))  // issue 10: decision_id
      }).then(function (b) {
        if (b.status === "pending") return waitAttempt(b.attempt_id);
        afterBooking(b);
      }).catch(failed);
    });
  }

  function waitAttempt(id) {
    return api("/attempts/" + encodeURIComponent(id)).then(function (a) {
      if (a.status === "pending") return new Promise(function (res) { setTimeout(res, 1000); }).then(function () { return waitAttempt(id); });
      if (a.status === "confirmed") return afterBooking({ appointment_id: a.appointment_id });
      var e = new Error(a.code); e.body = { code: a.code }; throw e;
    });
  }

  // Booked: keep the manage link for this tab (the edge knows the appointment, not the link), then
  // show the confirmation as the edge's status tells it — the same view every reload gets.
  function afterBooking(b) {
    if (b.manage_url) { try { sessionStorage.setItem("sg_manage_" + b.appointment_id, b.manage_url); } catch (e) { /* off */ } }
    var token = admission;
    if (ticker) { clearInterval(ticker); ticker = null; }
    readStatus().then(function (rb) {
      var st = rb[1];
      if (st.appointment) return showBooked(st.appointment, st.admission_token ? st : token);
      var s = site() || {};
      showBooked({ appointment_id: b.appointment_id, status: "confirmed", site_name: s.name, address: s.address || null,
        timezone: s.timezone || "UTC", starts_at: b.starts_at, manage_url: b.manage_url }, token);
    }).catch(function () { showError(T.error_connection); });
  }

  function whenText(a) {
    var at = new Date(a.starts_at);
    try {
      var text = new Intl.DateTimeFormat(lang, { weekday: "long", year: "numeric", month: "long", day: "numeric",
        hour: "2-digit", minute: "2-digit", timeZone: a.timezone }).format(at);
      return text + " (" + zoneName(a.timezone, at) + ")";
    } catch (e) { return a.local_starts_at || a.starts_at; }
  }

  function showBooked(a, withToken) {
    if (ticker) { clearInterval(ticker); ticker = null; }
    if (countdown) { clearInterval(countdown); countdown = null; }
    admission = withToken && withToken.admission_token ? withToken : admission;
    $("queue").hidden = true;
    $("booking").hidden = true;
    $("done").hidden = false;
    var title = document.querySelector("h1").textContent;
    $("what").textContent = a.type_name ? title + " — " + a.type_name : title;
    $("where").textContent = a.site_name || a.site_id || "";
    $("address").textContent = a.address || "";
    $("when").textContent = whenText(a);
    $("cancelled").hidden = a.status !== "cancelled";
    var manage = a.manage_url;
    if (!manage) { try { manage = sessionStorage.getItem("sg_manage_" + a.appointment_id); } catch (e) { /* off */ } }
    if (manage) { $("manage-link").href = manage; $("manage-link").hidden = false; }
    var cal = $("calendar-link");
    cal.href = apiBase + "/api/v1/appointments/" + encodeURIComponent(a.appointment_id) + "/calendar.ics";
    cal.hidden = a.status === "cancelled";
    enter("booked");
  }

  // The calendar file needs a credential: the manage link's, else the admission's (a plain link
  // cannot send one), so the page fetches it and hands the browser the file.
  $("calendar-link").addEventListener("click", function (ev) {
    var manage = $("manage-link").hidden ? null : $("manage-link").href;
    var credential = manage ? new URL(manage).searchParams.get("c") : (admission && admission.admission_token);
    if (!credential) return;  // nothing to send: let the browser follow the link
    ev.preventDefault();
    var headers = { "Authorization": "Bearer " + credential };
    var secret = manage ? null : deviceSecret();
    if (secret) headers["X-Device-Key"] = secret;
    fetch(ev.currentTarget.href, { headers: headers }).then(function (r) {
      if (!r.ok) return r.json().then(function (b) { showError(problemText(b)); });
      return r.blob().then(function (blob) {
        var a = document.createElement("a");
        a.href = URL.createObjectURL(blob);
        a.download = "appointment.ics";
        document.body.appendChild(a);
        a.click();
        setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
      });
    }).catch(function () { showError(T.error_connection); });
  });

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
        if (!rb[0].ok) return showError(problemText(rb[1]));
        showError("");
        var st = Object.assign({ position: 0, eta_seconds: 0 }, rb[1]);
        render(st);
        admitted(st);
      })
      .catch(function () { showError(T.error_connection); });
  }

  $("join-form").hidden = true;  // with JavaScript the page joins by itself
  if (view === "closed") return;
  var invite = /\/invite$/.test(location.pathname) && location.hash.length > 1 ? location.hash.slice(1) : null;
  if (invite) redeem(invite); else poll();
})();
