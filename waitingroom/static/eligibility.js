// The queue page's eligibility step (waitingroom/eligibility.py renders it): answer the published rule
// set's questions while waiting, see the decision and its reasons, and let the booking form book only
// with an eligible decision (queue.js asks window.sgEligibility before booking). Every word comes from
// the server's catalog (#eligibility-strings), in the page's language.
(function () {
  "use strict";
  var section = document.getElementById("eligibility");
  if (!section) return;
  var T = JSON.parse(document.getElementById("eligibility-strings").textContent);
  var eventId = document.body.dataset.eventId;
  var form = document.getElementById("eligibility-form");
  var button = document.getElementById("eligibility-check");
  var storeKey = "sg_decision_" + eventId;
  var admission = null;  // queue.js announces it (sg:admitted): a visitor let in by an invite has no ticket
  var decision = null;   // {decision_id, eligible, valid_until, reasons}
  var $ = function (id) { return document.getElementById(id); };
  section.hidden = false;  // queue.js joins by itself: the ticket is there by the time the answers are
  var fill = function (text, values) { return text.replace(/\{(\w+)\}/g, function (_, k) { return values[k]; }); };

  function current() {
    return decision && decision.eligible && new Date(decision.valid_until) > new Date() ? decision : null;
  }

  window.sgEligibility = {
    eligible: function () { return current() !== null; },
    blockedText: function () { return decision && decision.eligible ? T.expired : T.book_blocked; },
    bookingFields: function () { var d = current(); return d ? { decision_id: d.decision_id } : {}; }
  };

  function showError(text) { var e = $("eligibility-error"); e.textContent = text || ""; e.hidden = !text; }

  function render(d) {
    decision = d;
    var box = $("eligibility-result");
    box.textContent = "";
    var outcome = document.createElement("p");
    outcome.className = "state";
    outcome.id = "eligibility-outcome";
    outcome.textContent = d.eligible ? T.eligible : T.ineligible;
    box.appendChild(outcome);
    if (!d.eligible) {
      var list = document.createElement("ul");
      list.id = "eligibility-reasons";
      (d.reasons || []).forEach(function (r) {
        var li = document.createElement("li"); li.textContent = r.text || r.code; list.appendChild(li);
      });
      box.appendChild(list);
    }
    var next = document.createElement("p");
    next.id = "eligibility-next";
    next.textContent = d.eligible
      ? fill(T.next_eligible, { time: new Date(d.valid_until).toLocaleString(document.documentElement.lang) })
      : fill(T.next_ineligible, { id: d.decision_id });
    box.appendChild(next);
    box.hidden = false;
    button.textContent = T.check_again;
    section.dataset.eligible = d.eligible ? "true" : "false";
  }

  function deviceSecret() {  // the secret queue.js keeps for this event (never made here)
    try { return localStorage.getItem("sg_device_" + eventId); } catch (e) { return null; }
  }

  function collect() {
    var attributes = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.name.indexOf("a_") !== 0) return;
      var name = el.name.slice(2), kind = el.dataset.type;
      if (kind === "bool") { if (el.checked) attributes[name] = el.value === "yes"; return; }
      if (kind === "int") { attributes[name] = /^-?\d+$/.test(el.value.trim()) ? parseInt(el.value, 10) : el.value; return; }
      if (kind === "list") {
        attributes[name] = el.value.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
        return;
      }
      attributes[name] = el.value.trim();
    });
    var body = { person: { id_number: $("el_id_number").value.trim(), birth_date: $("el_birth_date").value },
                 attributes: attributes };
    var token = $("el_id_token");
    if (token && token.value.trim()) body.id_token = token.value.trim();
    return body;
  }

  function request(body) {
    var headers = { "Content-Type": "application/json" };
    var secret = deviceSecret();
    if (secret) headers["X-Device-Key"] = secret;
    var url = "/api/v1/events/" + encodeURIComponent(eventId) + "/eligibility:evaluate";  // the edge: ticket cookie
    if (admission) {  // admitted: straight to the booking API with the admission token
      url = admission.booking_url + "/events/" + encodeURIComponent(eventId) + "/eligibility:evaluate";
      headers.Authorization = "Bearer " + admission.admission_token;
    }
    return fetch(url, { method: "POST", credentials: "same-origin", cache: "no-store", headers: headers,
      body: JSON.stringify(body) });
  }

  // A provider answering with the ID token in this page's fragment (#id_token=...) fills the field.
  var match = /[#&]id_token=([^&]+)/.exec(location.hash);
  if (match && $("el_id_token")) {
    $("el_id_token").value = decodeURIComponent(match[1]);
    history.replaceState(null, "", location.pathname);  // the token leaves the address bar and history
  }

  document.addEventListener("sg:admitted", function (e) { admission = e.detail; });

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = collect();
    showError("");
    button.disabled = true;
    button.textContent = T.checking;
    request(body)
      .then(function (r) { return r.json().then(function (b) { return [r, b]; }); })
      .then(function (rb) {
        var r = rb[0], b = rb[1];
        button.disabled = false;
        if (!r.ok) {
          button.textContent = decision ? T.check_again : T.check;
          return showError(T["error_" + b.code] || T.error_generic);
        }
        render(b);
        try { sessionStorage.setItem(storeKey, JSON.stringify(b)); } catch (e) { /* storage off: this page only */ }
        if (b.eligible) {  // the booking is for the same person: carry the answers over
          var stale = $("error");  // queue.js's line: drop a "check your eligibility first" left from before
          if (stale && (stale.textContent === T.book_blocked || stale.textContent === T.expired)) stale.hidden = true;
          if ($("id_number")) $("id_number").value = body.person.id_number;
          if ($("birth_date")) $("birth_date").value = body.person.birth_date;
        }
      })
      .catch(function () { button.disabled = false; button.textContent = T.check; showError(T.error_generic); });
  });

  // The decision the server rendered (no-JavaScript form), else the one this tab made earlier.
  if (section.dataset.decisionId) {
    var kept = null;
    try { kept = JSON.parse(sessionStorage.getItem(storeKey) || "null"); } catch (e) { kept = null; }
    decision = kept && kept.decision_id === section.dataset.decisionId ? kept : {
      decision_id: section.dataset.decisionId, eligible: section.dataset.eligible === "true",
      valid_until: section.dataset.validUntil, reasons: [] };
  } else {
    try { var stored = JSON.parse(sessionStorage.getItem(storeKey) || "null"); if (stored) render(stored); } catch (e) { /* none */ }
  }
})();
