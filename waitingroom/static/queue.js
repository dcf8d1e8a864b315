// The queue page: join, poll as told by poll_after_ms, then book through the booking API.
(function () {
  "use strict";
  var eventId = document.body.dataset.eventId;
  var base = "/api/v1/events/" + encodeURIComponent(eventId);
  var firstPosition = null;
  var admission = null;
  var $ = function (id) { return document.getElementById(id); };

  function showError(text) { var e = $("error"); e.textContent = text; e.hidden = !text; }

  function fmtEta(s) {
    if (s === null || s === undefined) return "unknown (admissions paused)";
    if (s < 60) return "less than a minute";
    var m = Math.round(s / 60);
    return m < 60 ? "about " + m + " min" : "about " + Math.round(m / 6) / 10 + " h";
  }

  function render(st) {
    var labels = { prequeue: "The queue opens soon. You have a place.", waiting: "You are in the queue.",
                   admitted: "It's your turn!", expired: "Your turn has expired. Reload to join again." };
    $("state").textContent = labels[st.state] || st.state;
    $("position").textContent = st.position === null ? "–" : String(st.position);
    if (st.state === "prequeue" && st.opens_at) {
      var left = Math.max(0, (new Date(st.opens_at).getTime() - Date.now()) / 1000);
      $("eta").textContent = "the queue opens in " + fmtEta(left).replace("about ", "") +
        "; places are then drawn at random for everyone already here";
    } else {
      $("eta").textContent = st.state === "admitted" ? "now" : fmtEta(st.eta_seconds);
    }
    if (st.position !== null && firstPosition === null) firstPosition = Math.max(st.position, 1);
    var pct = st.state === "admitted" ? 100 :
      (firstPosition ? Math.round(100 * (1 - st.position / (firstPosition + 1))) : 0);
    $("bar-fill").style.width = pct + "%";
    document.querySelector(".bar").setAttribute("aria-valuenow", String(pct));
  }

  function schedule(ms) { setTimeout(poll, Math.max(250, ms)); }

  function poll() {
    fetch(base + "/status", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json().then(function (b) { return [r, b]; }); })
      .then(function (rb) {
        var r = rb[0], st = rb[1];
        if (r.status === 401) { return join(); }
        if (!r.ok) { showError(st.detail || "Something went wrong; retrying."); return schedule(5000); }
        showError("");
        render(st);
        if (st.state === "admitted") { return admitted(st); }
        if (st.state !== "expired") { schedule(st.poll_after_ms); }
      })
      .catch(function () { showError("Connection problem; retrying."); schedule(5000); });
  }

  function join() {
    fetch(base + "/join", { method: "POST", credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (b) { return [r, b]; }); })
      .then(function (rb) {
        var r = rb[0], st = rb[1];
        if (!r.ok) {
          showError(st.detail || "Could not join.");
          var retry = parseInt(r.headers.get("Retry-After") || "0", 10);
          if (retry) schedule(retry * 1000);
          return;
        }
        render(st);
        schedule(st.poll_after_ms);
      })
      .catch(function () { showError("Connection problem; retrying."); schedule(5000); });
  }

  // --- booking --------------------------------------------------------------------------------
  function api(path, opts) {
    opts = opts || {};
    opts.headers = Object.assign({ "Authorization": "Bearer " + admission.admission_token }, opts.headers || {});
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
        sel.appendChild(option(s.slot_id, s.local_starts_at.replace("T", " ").slice(0, 16) + " (" + s.remaining + " left)"));
      });
    });
  }

  function admitted(st) {
    if (admission) return;
    admission = st;
    document.querySelector(".hint").hidden = true;
    $("booking").hidden = false;
    $("expires").textContent = "Book before " + new Date(st.admission_expires_at).toLocaleTimeString() + ".";
    api("/sites").then(function (b) {
      var sel = $("site"); sel.innerHTML = "";
      b.sites.forEach(function (s) { sel.appendChild(option(s.site_id, s.name + " (" + s.region + ")")); });
      return loadSlots();
    }).catch(function (e) { showError(e.message); });
    $("site").addEventListener("change", function () { loadSlots().catch(function (e) { showError(e.message); }); });
    var key = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now()) + Math.random();
    $("book-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      $("book").disabled = true;
      showError("");
      api("/appointments", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": key },
        body: JSON.stringify({ slot_id: $("slot").value, person: {
          id_number: $("id_number").value, name: $("name").value, email: $("email").value,
          birth_date: $("birth_date").value } })
      }).then(function (b) {
        if (b.status === "pending") { return waitAttempt(b.attempt_id); }
        confirmed(b);
      }).catch(function (e) { showError(e.message); $("book").disabled = false; });
    });
  }

  function waitAttempt(id) {
    return api("/attempts/" + encodeURIComponent(id)).then(function (a) {
      if (a.status === "pending") { return new Promise(function (res) { setTimeout(res, 1000); }).then(function () { return waitAttempt(id); }); }
      if (a.status === "confirmed") { return api("/appointments/" + a.appointment_id).then(confirmed); }
      throw new Error(a.code || "rejected");
    });
  }

  function confirmed(b) {
    $("booking").hidden = true;
    $("done").hidden = false;
    $("confirmation").textContent = "Appointment " + b.appointment_id + " on " +
      b.local_starts_at.replace("T", " ").slice(0, 16) + " (local time at the site).";
  }

  poll();
})();
