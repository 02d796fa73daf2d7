// Operations Hub page: polls the hub JSON (same URL, ?format=json) and posts controls.
// Plain JavaScript, no dependencies. Every value from the server is inserted as text.
(function () {
  "use strict";

  var root = document.getElementById("operations-hub");
  if (!root) { return; }
  var refreshMs = parseInt(root.dataset.refreshMs, 10) || 1500;
  var canControl = root.dataset.canControl === "1";
  var rowsBody = document.getElementById("hub-rows");
  var typeSelect = document.getElementById("hub-type");
  var statusSelect = document.getElementById("hub-status");
  var message = document.getElementById("hub-message");
  var activeCount = document.getElementById("hub-active-count");
  var refreshed = document.getElementById("hub-refreshed");
  var csrfInput = root.querySelector("input[name=csrfmiddlewaretoken]");
  var pageUrl = window.location.pathname;
  var timer = null;
  var inFlight = false;
  var generation = 0;  // a response from before a filter change is dropped

  function csrfToken() {
    if (csrfInput) { return csrfInput.value; }
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function showMessage(text, ok) {
    message.textContent = text;
    message.className = "hub-message " + (ok ? "ok" : "error");
  }

  function cell(text, className) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (className) { td.className = className; }
    return td;
  }

  function controlButton(process, action) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "button hub-action hub-action-" + action;
    button.dataset.action = action;
    button.dataset.processId = process.id;
    button.textContent = action.charAt(0).toUpperCase() + action.slice(1);
    button.addEventListener("click", function () { control(process, action); });
    return button;
  }

  function renderRow(process) {
    var tr = document.createElement("tr");
    tr.dataset.processId = process.id;
    tr.dataset.status = process.status;
    tr.appendChild(cell(process.type, "hub-type"));
    tr.appendChild(cell(process.name, "hub-name"));
    tr.appendChild(cell(process.status, "hub-status"));
    tr.appendChild(cell(process.metadata && process.metadata.tenant_id, "hub-tenant"));
    tr.appendChild(cell((process.started_at || "").replace("T", " ").slice(0, 19), "hub-started"));
    tr.appendChild(cell(process.id, "hub-id"));
    var controls = cell("", "hub-controls");
    if (canControl) {
      (process.allowed_actions || []).forEach(function (action) {
        controls.appendChild(controlButton(process, action));
      });
    }
    tr.appendChild(controls);
    return tr;
  }

  function render(data) {
    var fragment = document.createDocumentFragment();
    if (!data.processes.length) {
      var empty = document.createElement("tr");
      empty.className = "hub-empty";
      var td = cell("No processes match.", "");
      td.colSpan = 7;
      empty.appendChild(td);
      fragment.appendChild(empty);
    }
    data.processes.forEach(function (process) { fragment.appendChild(renderRow(process)); });
    rowsBody.replaceChildren(fragment);
    activeCount.textContent = String(data.active_count);
    // Panels are server-rendered HTML (escaped there), refreshed with the table.
    Object.keys(data.panels || {}).forEach(function (key) {
      var section = document.getElementById(key + "-panel");
      if (section) { section.innerHTML = data.panels[key]; }
    });
    refreshed.textContent = new Date().toLocaleTimeString();
  }

  function query() {
    var params = new URLSearchParams({ format: "json", panels: "1" });
    if (typeSelect.value) { params.set("include", typeSelect.value); }
    if (statusSelect.value) { params.set("status", statusSelect.value); }
    return pageUrl + "?" + params.toString();
  }

  function refresh() {
    if (inFlight) { return; }
    inFlight = true;
    var mine = generation;
    fetch(query(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (result) {
        if (mine !== generation) { return; }
        if (result.ok) { render(result.body); } else { showMessage(result.body.detail, false); }
      })
      .catch(function () { showMessage("The hub could not be refreshed; retrying…", false); })
      .then(function () { inFlight = false; });
  }

  function schedule() {
    if (timer) { clearInterval(timer); }
    timer = setInterval(refresh, refreshMs);
  }

  function control(process, action) {
    var reason = window.prompt("Reason to " + action + " " + process.name + " (" + process.id + "):");
    if (reason === null) { return; }  // the operator changed their mind
    reason = reason.trim();
    if (!reason) { showMessage("A reason is required to " + action + ".", false); return; }
    fetch(pageUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": csrfToken()
      },
      body: JSON.stringify({ process_id: process.id, action: action, reason: reason })
    })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (result) {
        if (!result.ok) { showMessage(result.body.detail || "The control failed.", false); return; }
        var updated = result.body.process;
        var last = updated.history[0];  // newest first
        showMessage(
          action + " " + updated.id + ": " + (last ? last.state_before + " → " : "") + updated.status,
          true
        );
        var row = rowsBody.querySelector('tr[data-process-id="' + CSS.escape(updated.id) + '"]');
        if (row) { row.replaceWith(renderRow(updated)); }
        generation += 1;  // an older poll in flight must not paint the previous state back
        inFlight = false;
        refresh();
      })
      .catch(function () { showMessage("The control request failed.", false); });
  }

  function filtersChanged() {
    generation += 1;
    inFlight = false;
    refresh();
    schedule();
  }

  typeSelect.addEventListener("change", filtersChanged);
  statusSelect.addEventListener("change", filtersChanged);
  refresh();
  schedule();
})();
