// Operations Hub page: lives on the hub's event stream (this URL + stream/) and falls
// back to polling the hub JSON (?format=json) while the stream is unavailable; posts controls.
// Plain JavaScript, no dependencies. Every value from the server is inserted as text.
// #operations-hub[data-live] says how the page is fed: "stream" or "polling"; each row's
// data-via says what last painted it ("stream" or "poll").
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
  var liveIndicator = document.getElementById("hub-live");
  var activeStatuses = JSON.parse(
    (document.getElementById("hub-active-statuses") || {}).textContent || "{}");
  var timer = null;
  var inFlight = false;
  var generation = 0;  // a response from before a filter change is dropped
  var source = null;  // the EventSource while the page lives on the stream
  var streamGeneration = 0;  // events of a stream closed since (filters changed) are dropped
  // Rows the stream painted while a poll was in flight (null: removed): the poll's older
  // snapshot must not paint them back.
  var streamedDuringPoll = {};
  var refreshAgain = false;  // the stream opened while a read was in flight: read once more
  var lastEventId = "";
  var reconnectTimer = null;
  var RECONNECT_MS = 10000;  // how long the page polls before trying the stream again
  var PANELS_MS = 30000;  // panels ("Needs attention") refresh this often while streaming
  var PANELS_AFTER_CHANGE_MS = 1000;
  var LEAVING_MS = 2000;  // how long a row that left the view still shows its new state  // ... and this long after a streamed change (once a burst)
  var panelsTimer = null;

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

  function renderRow(process, via) {
    var tr = document.createElement("tr");
    tr.dataset.processId = process.id;
    tr.dataset.status = process.status;
    tr.dataset.startedAt = process.started_at || "";
    tr.dataset.type = process.type;
    tr.dataset.via = via || "poll";
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

  function renderPanels(panels) {
    // Panels are server-rendered HTML (escaped there).
    Object.keys(panels || {}).forEach(function (key) {
      var section = document.getElementById(key + "-panel");
      if (section) { section.innerHTML = panels[key]; }
    });
  }

  function panelsSoon() {
    if (panelsTimer) { return; }
    panelsTimer = setTimeout(function () {
      panelsTimer = null;
      fetch(pageUrl + "?format=json&panels=only",
            { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : {}; })
        .then(function (body) { renderPanels(body.panels); })
        .catch(function () { /* the next change or poll tries again */ });
    }, PANELS_AFTER_CHANGE_MS);
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
    var seen = {};
    data.processes.forEach(function (process) {
      seen[process.id] = true;
      if (Object.prototype.hasOwnProperty.call(streamedDuringPoll, process.id)) {
        if (streamedDuringPoll[process.id]) { fragment.appendChild(streamedDuringPoll[process.id]); }
        return;
      }
      fragment.appendChild(renderRow(process));
    });
    Object.keys(streamedDuringPoll).forEach(function (id) {
      var row = streamedDuringPoll[id];
      if (row && !seen[id]) { fragment.insertBefore(row, fragment.firstChild); }
    });
    streamedDuringPoll = {};
    rowsBody.replaceChildren(fragment);
    activeCount.textContent = String(data.active_count);
    if (rowsBody.querySelector("tr[data-process-id]")) {
      var placeholder = rowsBody.querySelector("tr.hub-empty");
      if (placeholder) { placeholder.remove(); }
    }
    recount();  // the count of what is shown, and the placeholder when nothing is
    renderPanels(data.panels);  // refreshed with the table
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
    streamedDuringPoll = {};
    var mine = generation;
    fetch(query(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (result) {
        if (mine !== generation) { return; }
        if (result.ok) { render(result.body); } else { showMessage(result.body.detail, false); }
      })
      .catch(function () {
        showMessage("The hub could not be refreshed; retrying…", false);
        // Living on the stream, the next poll is far off: try this read again soon.
        if (root.dataset.live === "stream") { setTimeout(refresh, refreshMs); }
      })
      .then(function () {
        inFlight = false;
        if (refreshAgain) { refreshAgain = false; refresh(); }
      });
  }

  function schedule(everyMs) {
    if (timer) { clearInterval(timer); }
    timer = setInterval(refresh, everyMs || refreshMs);
  }

  // --- the live stream -------------------------------------------------------------------

  function setLive(mode) {
    root.dataset.live = mode;
    liveIndicator.textContent = mode === "stream" ? "live" : mode;
  }

  function isActive(process) {
    return (activeStatuses[process.type] || []).indexOf(process.status) !== -1;
  }

  function matchesFilters(process) {
    if (typeSelect.value) {
      var option = typeSelect.options[typeSelect.selectedIndex];
      if (option && option.textContent !== process.type) { return false; }
    }
    if (statusSelect.value) { return process.status === statusSelect.value; }
    return isActive(process);
  }

  function recount() {
    var rows = rowsBody.querySelectorAll("tr[data-process-id]");
    var active = 0;
    rows.forEach(function (row) {
      if (isActive({ type: row.dataset.type, status: row.dataset.status })) { active += 1; }
    });
    activeCount.textContent = String(active);
    if (!rows.length && !rowsBody.querySelector("tr.hub-empty")) {
      var empty = document.createElement("tr");
      empty.className = "hub-empty";
      var td = cell("No processes match.", "");
      td.colSpan = 7;
      empty.appendChild(td);
      rowsBody.appendChild(empty);
    }
  }

  // A row that leaves the view (it finished, or left the status filtered on) shows its new
  // state for a moment before it goes, as it did between two polls.
  function showLeaving(existing, process) {
    var leaving = renderRow(process, existing.dataset.via);
    leaving.classList.add("hub-leaving");
    existing.replaceWith(leaving);
    setTimeout(function () {
      if (leaving.isConnected) { leaving.remove(); recount(); }
    }, LEAVING_MS);
    return leaving;
  }

  function applyEvent(process) {
    var existing = rowsBody.querySelector('tr[data-process-id="' + CSS.escape(process.id) + '"]');
    if (!matchesFilters(process)) {
      if (existing) { showLeaving(existing, process); existing = null; }
      if (inFlight) { streamedDuringPoll[process.id] = null; }
      recount();
      panelsSoon();
      return;
    }
    var row = renderRow(process, "stream");
    if (inFlight) { streamedDuringPoll[process.id] = row; }
    if (existing) {
      existing.replaceWith(row);
    } else {
      var empty = rowsBody.querySelector("tr.hub-empty");
      if (empty) { empty.remove(); }
      // Newest first, as the hub lists them.
      var before = null;
      rowsBody.querySelectorAll("tr[data-process-id]").forEach(function (other) {
        if (!before && (other.dataset.startedAt || "") < (process.started_at || "")) {
          before = other;
        }
      });
      rowsBody.insertBefore(row, before);
    }
    recount();
    panelsSoon();
    refreshed.textContent = new Date().toLocaleTimeString();
  }

  function streamUrl() {
    var params = new URLSearchParams();
    if (typeSelect.value) { params.set("include", typeSelect.value); }
    if (statusSelect.value) { params.set("status", statusSelect.value); }
    // A new EventSource sends no Last-Event-ID of its own: the page passes the last one.
    if (lastEventId) { params.set("last_event_id", lastEventId); }
    return pageUrl + "stream/?" + params.toString();
  }

  function closeStream() {
    streamGeneration += 1;
    if (source) { source.close(); source = null; }
    if (reconnectTimer) { clearTimeout(reconnectTimer); reconnectTimer = null; }
  }

  function fallBackToPolling() {
    closeStream();
    setLive("polling");
    schedule();
    refresh();
    reconnectTimer = setTimeout(openStream, RECONNECT_MS);
  }

  function openStream() {
    closeStream();
    if (!window.EventSource) { setLive("polling"); schedule(); return; }
    var mine = ++streamGeneration;
    source = new EventSource(streamUrl());
    source.addEventListener("open", function () {
      if (mine !== streamGeneration) { return; }
      setLive("stream");
      schedule(PANELS_MS);  // the list comes by the stream; panels still refresh
      // One more read after subscribing, so nothing committed before the stream opened is
      // missing; after the read in flight, if any (which is shown: it is the newest).
      if (inFlight) { refreshAgain = true; } else { refresh(); }
    });
    source.addEventListener("process", function (event) {
      if (mine !== streamGeneration) { return; }
      lastEventId = event.lastEventId || lastEventId;
      applyEvent(JSON.parse(event.data));
    });
    source.addEventListener("reset", function (event) {
      if (mine !== streamGeneration) { return; }
      lastEventId = event.lastEventId || lastEventId;
      inFlight = false;
      refresh();  // too much was missed: reload the list
    });
    source.addEventListener("error", function () {
      if (mine !== streamGeneration) { return; }
      fallBackToPolling();  // refused (503), dropped or ended: poll, try again later
    });
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
        if (row && !matchesFilters(updated)) {
          showLeaving(row, updated);
        } else if (row) {
          row.replaceWith(renderRow(updated, row.dataset.via));
        }
        generation += 1;  // an older poll in flight must not paint the previous state back
        inFlight = false;
        refresh();
      })
      .catch(function () { showMessage("The control request failed.", false); });
  }

  function filtersChanged() {
    generation += 1;
    inFlight = false;
    lastEventId = "";
    refresh();
    schedule();
    openStream();
  }

  typeSelect.addEventListener("change", filtersChanged);
  statusSelect.addEventListener("change", filtersChanged);
  setLive("polling");
  refresh();
  schedule();
  openStream();
})();
