// Operations Hub page: "Pause / Resume / Cancel all N matching…" for the page's current
// filters (N from a dry run), a confirmation with a reason, then the batch's progress, read
// from /admin/operations/hub/batches/?id=… until it ends. Every server value is set as text.
(function () {
  "use strict";

  var panel = document.getElementById("hub-batches");
  if (!panel) { return; }

  // One request of this page in flight at a time (the hub's refresh, the counts, a batch's
  // progress): the embedded mode's SQLite, and the test live server that shares one SQLite
  // connection between its threads, serve a page's requests better one after another, and
  // a page never needs two at once. Loaded before hub.js, so its fetches queue here too.
  var realFetch = window.fetch.bind(window);
  var queue = Promise.resolve();
  window.fetch = function () {
    var args = arguments;
    var mine = queue.then(function () { return realFetch.apply(null, args); });
    queue = mine.then(function () {}, function () {});
    return mine;
  };
  var url = panel.dataset.url;
  var typeSelect = document.getElementById("hub-type");
  var statusSelect = document.getElementById("hub-status");
  var tenantLabel = document.getElementById("batch-tenant-label");
  var tenantSelect = document.getElementById("batch-tenant");
  var buttons = Array.prototype.slice.call(panel.querySelectorAll("button.batch-open"));
  var dialog = document.getElementById("batch-dialog");
  var form = document.getElementById("batch-form");
  var question = document.getElementById("batch-question");
  var reasonInput = document.getElementById("batch-reason");
  var progress = document.getElementById("batch-progress");
  var stopButton = document.getElementById("batch-stop");
  var message = document.getElementById("hub-message");
  var root = document.getElementById("operations-hub");
  var csrfInput = root.querySelector("input[name=csrfmiddlewaretoken]");
  var FINAL = { completed: true, cancelled: true, failed: true };
  var POLL_MS = 500;
  var counts = {};
  var pending = null;  // the action the dialog asks about
  var running = null;  // the batch being watched
  var countGeneration = 0;

  function showMessage(text, ok) {
    message.textContent = text;
    message.className = "hub-message " + (ok ? "ok" : "error");
  }

  function filter() {
    var value = {};
    if (typeSelect.value) { value.include = typeSelect.value; }
    if (statusSelect.value) { value.status = statusSelect.value; }
    return value;
  }

  function send(body) {
    body.tenant = tenantSelect.value || undefined;
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json",
                 "X-CSRFToken": csrfInput ? csrfInput.value : "" },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, body: data }; });
    });
  }

  function get(query) {
    return fetch(url + "?" + query.toString(),
                 { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (data) { return { ok: response.ok, body: data }; });
      });
  }

  // One request for the three counts: the page sends one request at a time of its own.
  function recount() {
    var mine = ++countGeneration;
    buttons.forEach(function (button) {
      button.disabled = true;
      button.querySelector(".batch-count").textContent = "…";
    });
    if (!tenantLabel.hidden && !tenantSelect.value) { return; }  // several tenants: pick one
    var query = new URLSearchParams(filter());
    query.set("counts", "1");
    if (tenantSelect.value) { query.set("tenant", tenantSelect.value); }
    get(query).then(function (result) {
      if (mine !== countGeneration) { return; }
      if (!result.ok) { showMessage(result.body.detail || "Could not count.", false); return; }
      buttons.forEach(function (button) {
        var matched = result.body[button.dataset.action];
        counts[button.dataset.action] = matched;
        button.querySelector(".batch-count").textContent = String(matched);
        button.disabled = !matched || running !== null;
      });
    });
  }

  function paint(batch) {
    progress.hidden = false;
    progress.dataset.state = batch.state;
    document.getElementById("batch-id").textContent = batch.id;
    document.getElementById("batch-state").textContent = batch.state;
    document.getElementById("batch-done").textContent = String(batch.done);
    document.getElementById("batch-matched").textContent = String(batch.matched);
    document.getElementById("batch-skipped").textContent = String(batch.skipped);
    document.getElementById("batch-failed").textContent = String(batch.failed);
    stopButton.hidden = !!FINAL[batch.state];
  }

  function watch(batchId) {
    running = batchId;
    get(new URLSearchParams({ id: batchId }))
      .then(function (result) {
        var batch = result.body;
        if (!result.ok) { running = null; showMessage(batch.detail || "", false); return; }
        paint(batch);
        if (FINAL[batch.state]) {
          running = null;
          showMessage("Batch " + batch.id + " " + batch.state + ": " + batch.done + " done, " +
                      batch.skipped + " skipped, " + batch.failed + " failed.",
                      batch.state === "completed");
          recount();
        } else {
          setTimeout(function () { watch(batchId); }, POLL_MS);
        }
      })
      .catch(function () { setTimeout(function () { watch(batchId); }, POLL_MS * 4); });
  }

  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      pending = button.dataset.action;
      var tenant = tenantSelect.value ? " of " + tenantSelect.value : "";
      question.textContent = pending.charAt(0).toUpperCase() + pending.slice(1) + " all " +
        counts[pending] + " matching processes" + tenant + "? Processes that moved meanwhile are skipped.";
      reasonInput.value = "";
      dialog.showModal();
    });
  });

  document.getElementById("batch-dismiss").addEventListener("click", function () {
    dialog.close();
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var reason = reasonInput.value.trim();
    if (!reason) { reasonInput.focus(); return; }
    dialog.close();
    buttons.forEach(function (b) { b.disabled = true; });
    send({ action: pending, filter: filter(), reason: reason }).then(function (result) {
      if (!result.ok) { showMessage(result.body.detail || "The batch failed.", false); recount(); return; }
      paint(result.body);
      watch(result.body.id);
    }).catch(function () { showMessage("The batch request failed.", false); recount(); });
  });

  stopButton.addEventListener("click", function () {
    if (running) { send({ cancel: running }); }
  });

  get(new URLSearchParams()).then(function (result) {
    var data = result.body;
    if ((data.tenants || []).length > 1) {
      var choose = document.createElement("option");
      choose.value = "";
      choose.textContent = "Choose a tenant";
      tenantSelect.appendChild(choose);
    }
    (data.tenants || []).forEach(function (slug) {
      var option = document.createElement("option");
      option.value = slug;
      option.textContent = slug;
      tenantSelect.appendChild(option);
    });
    tenantLabel.hidden = (data.tenants || []).length < 2;
    var active = (data.batches || []).filter(function (b) { return !FINAL[b.state]; })[0];
    if (active) { paint(active); watch(active.id); } else { recount(); }
  });

  typeSelect.addEventListener("change", recount);
  statusSelect.addEventListener("change", recount);
  tenantSelect.addEventListener("change", recount);
})();
