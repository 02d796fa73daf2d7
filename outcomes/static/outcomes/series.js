/* The Outcomes dashboard's "Over time" charts: series from rollups (the staff JSON twin of
   GET /v1/outcomes/series), bucketed in the browser's time zone. Self-contained: no library,
   no CDN. Each metric gets an SVG with its average (solid) and p95 (dashed) per bucket, the
   previous period's average (grey) when compared, and a tooltip per bucket. */
(function () {
  "use strict";
  const panel = document.getElementById("series-panel");
  if (!panel) return;
  const NS = "http://www.w3.org/2000/svg";
  const W = 440, H = 180, LEFT = 56, RIGHT = 12, TOP = 12, BOTTOM = 34;
  const PERIODS = {"1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3,
                   "90d": 90 * 86400e3, "365d": 365 * 86400e3};
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const bucketSelect = document.getElementById("series-bucket");
  const periodSelect = document.getElementById("series-period");
  const compareBox = document.getElementById("series-compare");
  const errorBox = document.getElementById("series-error");
  document.getElementById("series-tz").textContent = "Times in " + tz;

  // The pickers live in the page URL, so a view can be shared and survives a reload.
  const query = new URLSearchParams(window.location.search);
  if (query.get("bucket")) bucketSelect.value = query.get("bucket");
  if (query.get("period")) periodSelect.value = query.get("period");
  compareBox.checked = query.get("compare") === "previous";

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(value) {
    if (value === null || value === undefined) return "—";
    return Math.abs(value) >= 1e15 ? value.toExponential(3)
      : value.toLocaleString(undefined, {maximumSignificantDigits: 4});
  }

  function label(iso, bucket) {
    const options = {timeZone: tz};
    if (bucket === "minute" || bucket === "hour") {
      Object.assign(options, {month: "short", day: "numeric", hour: "2-digit",
                              minute: "2-digit"});
    } else {
      Object.assign(options, {year: "numeric", month: "short", day: "numeric"});
    }
    return new Intl.DateTimeFormat(undefined, options).format(new Date(iso));
  }

  function draw(figure, body) {
    const svg = figure.querySelector("svg");
    svg.replaceChildren();
    const buckets = body.buckets;
    const previous = body.previous ? body.previous.buckets : [];
    svg.setAttribute("data-buckets", String(buckets.length));
    const values = [];
    for (const b of buckets.concat(previous)) {
      for (const key of ["avg", "p95", "min"]) if (b[key] !== null) values.push(b[key]);
    }
    const summary = figure.querySelector(".series-summary");
    summary.textContent = body.summary.count
      ? `${body.summary.count} events · avg ${fmt(body.summary.avg)} · p50 ` +
        `${fmt(body.summary.p50)} · p95 ${fmt(body.summary.p95)}` +
        (body.previous ? ` · previous avg ${fmt(body.previous.summary.avg)}` : "")
      : "No events in this period";
    let low = values.length ? Math.min(...values) : 0;
    let high = values.length ? Math.max(...values) : 1;
    if (high - low < 1e-12 * Math.max(1, Math.abs(high))) {
      const pad = Math.abs(high) * 0.1 || 1; low -= pad; high += pad;
    }
    const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
    const step = buckets.length > 1 ? plotW / (buckets.length - 1) : 0;
    const x = (i) => (buckets.length > 1 ? LEFT + i * step : LEFT + plotW / 2);
    const y = (v) => TOP + (high - v) / (high - low) * plotH;
    for (const v of [high, (high + low) / 2, low]) {
      svg.append(el("line", {class: "grid", x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v)}));
      svg.append(el("text", {class: "tick", x: LEFT - 4, y: y(v), "text-anchor": "end",
                             "dominant-baseline": "middle"}, fmt(v)));
    }
    svg.append(el("line", {class: "axis", x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM}));
    svg.append(el("line", {class: "axis", x1: LEFT, x2: W - RIGHT, y1: H - BOTTOM,
                           y2: H - BOTTOM}));
    const ends = [0, buckets.length - 1];
    for (const [i, anchor] of [[ends[0], "start"], [ends[1], "end"]]) {
      if (i < 0) continue;
      svg.append(el("text", {class: "tick x-label", x: x(i), y: H - BOTTOM + 14,
                             "text-anchor": anchor}, label(buckets[i].start, body.bucket)));
    }
    // A line per run of non-empty buckets: an empty bucket is a gap, not a zero.
    function lines(series, key, cls) {
      let run = [];
      const flush = () => {
        if (run.length > 1) svg.append(el("polyline", {class: cls, points: run.join(" ")}));
        run = [];
      };
      series.forEach((b, i) => {
        if (b[key] === null || i >= buckets.length) { flush(); return; }
        run.push(`${x(i).toFixed(2)},${y(b[key]).toFixed(2)}`);
      });
      flush();
    }
    lines(previous, "avg", "previous");
    lines(buckets, "p95", "p95");
    lines(buckets, "avg", "avg");
    buckets.forEach((b, i) => {
      const dot = el("circle", {class: b.count ? "point" : "point empty", cx: x(i),
                                cy: b.count ? y(b.avg) : H - BOTTOM, r: b.count ? 3 : 1.5,
                                "data-start": b.start, "data-count": b.count});
      dot.append(el("title", {}, `${label(b.start, body.bucket)}: ${b.count} events, avg ` +
        `${fmt(b.avg)}, p50 ${fmt(b.p50)}, p95 ${fmt(b.p95)}, min ${fmt(b.min)}, ` +
        `max ${fmt(b.max)}`));
      svg.append(dot);
    });
  }

  // Pickers changed quickly start overlapping loads: only the latest one draws.
  let generation = 0;

  async function load() {
    const mine = ++generation;
    const now = Date.now();
    const bucket = bucketSelect.value;
    const period = periodSelect.value;
    const query = new URLSearchParams(window.location.search);
    query.set("bucket", bucket);
    query.set("period", period);
    if (compareBox.checked) query.set("compare", "previous"); else query.delete("compare");
    history.replaceState(null, "", "?" + query.toString());
    errorBox.hidden = true;
    panel.setAttribute("aria-busy", "true");
    const figures = Array.from(panel.querySelectorAll("figure.series-chart"));
    try {
      for (const figure of figures) {
        const params = new URLSearchParams({
          tenant: panel.dataset.tenant, metric_type: figure.dataset.metric, bucket, tz,
          from: new Date(now - PERIODS[period]).toISOString(), to: new Date(now).toISOString(),
        });
        if (panel.dataset.domain) params.set("domain", panel.dataset.domain);
        if (panel.dataset.eventType) params.set("event_type", panel.dataset.eventType);
        if (compareBox.checked) params.set("compare", "previous");
        const response = await fetch(panel.dataset.url + "?" + params.toString(),
                                     {credentials: "same-origin"});
        const body = await response.json();
        if (mine !== generation) return;
        if (!response.ok) {
          errorBox.textContent = body.detail || `Error ${response.status}`;
          errorBox.hidden = false;
          figures.forEach((f) => f.querySelector("svg").replaceChildren());
          return;
        }
        draw(figure, body);
      }
    } finally {
      if (mine === generation) {
        panel.setAttribute("aria-busy", "false");
        panel.dataset.loaded = String(mine);  // tests wait for the latest load
      }
    }
  }

  for (const control of [bucketSelect, periodSelect, compareBox]) {
    control.addEventListener("change", load);
  }
  load();
})();
