// Fareway dashboard.  Builds the page from /ui/api/* with DOM calls and textContent only:
// model and key names are user input and never become markup.  No external resources.
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var PALETTE = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6",
                 "#ec4899", "#14b8a6", "#84cc16", "#64748b"];
  var state = { range: "7d", overview: null, model: "" };

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function svg(tag, attrs) {
    var e = document.createElementNS(SVG_NS, tag);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, String(attrs[k]));
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // ------------------------------------------------------------------ formatting

  function money(s) {
    if (s === null || s === undefined) return "unpriced";
    var v = Number(s);
    if (v === 0) return "$0";
    var a = Math.abs(v);
    var digits = a >= 100 ? 2 : a >= 1 ? 2 : a >= 0.01 ? 4 : 6;
    var out = v.toLocaleString("en-US", { minimumFractionDigits: a >= 1 ? 2 : 0, maximumFractionDigits: digits });
    if (Number(out.replace(/,/g, "")) === 0) return "<$0.000001";
    return "$" + out;
  }

  function int(n) { return (n || 0).toLocaleString("en-US"); }

  function compact(n) {
    n = n || 0;
    if (n >= 1e9) return (n / 1e9).toFixed(n >= 1e10 ? 0 : 1) + "B";
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + "k";
    return int(n);
  }

  function ms(v) {
    if (v === null || v === undefined) return "–";
    if (v < 1000) return Math.round(v) + " ms";
    return (v / 1000).toFixed(v < 10000 ? 2 : 1) + " s";
  }

  function pct(x) {
    if (!x) return "0%";
    var p = x * 100;
    return (p < 1 ? p.toFixed(2) : p < 10 ? p.toFixed(1) : Math.round(p)) + "%";
  }

  function when(iso) {
    var d = new Date(iso);
    var now = new Date();
    var sameDay = d.toDateString() === now.toDateString();
    var t = d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return sameDay ? t : d.toLocaleDateString("en-US", { month: "short", day: "numeric" }) + " " + t;
  }

  // ------------------------------------------------------------------ data

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } }).then(function (r) {
      if (r.status === 401) { window.location.href = "/ui"; throw new Error("signed out"); }
      return r.json().then(function (body) {
        if (!r.ok) throw new Error((body && body.error && body.error.message) || ("HTTP " + r.status));
        return body;
      });
    });
  }

  function setStatus(text, isError) {
    var s = $("status");
    s.textContent = text || "";
    s.className = "status" + (isError ? " error" : "");
  }

  function load() {
    var app = $("app");
    app.setAttribute("data-state", "loading");
    setStatus("Loading…");
    return getJSON("/ui/api/overview?since=" + encodeURIComponent(state.range)).then(function (ov) {
      state.overview = ov;
      renderTotals(ov.totals);
      renderChart(ov);
      renderModels(ov.by_model);
      renderKeys(ov.by_key);
      renderAttribution("by-user", "User", ov.by_user || [], "user", "(no user)");
      renderAttribution("by-tag", "Tag", ov.by_tag || [], "tag", "(untagged)");
      renderLatency(ov.latency);
      app.setAttribute("data-since", ov.since || "");
      return loadCalls();
    }).then(function () {
      setStatus("");
      app.setAttribute("data-state", "ready");
    }).catch(function (err) {
      setStatus("Could not load the dashboard data: " + err.message, true);
      app.setAttribute("data-state", "error");
    });
  }

  function loadCalls() {
    var url = "/ui/api/calls?n=50" + (state.model ? "&model=" + encodeURIComponent(state.model) : "");
    return getJSON(url).then(function (body) { renderCalls(body.data); });
  }

  // ------------------------------------------------------------------ totals

  function kpi(id, text, value) {
    var e = $(id);
    e.textContent = text;
    if (value !== undefined) e.setAttribute("data-value", String(value));
  }

  function renderTotals(t) {
    kpi("t-cost", money(t.cost), t.cost);
    kpi("t-calls", int(t.calls), t.calls);
    kpi("t-input", compact(t.input_tokens), t.input_tokens);
    kpi("t-output", compact(t.output_tokens), t.output_tokens);
    kpi("t-saved", money(t.cost_saved), t.cost_saved);
    var hits = $("t-hits");
    hits.textContent = t.cache_lookups ? int(t.cache_hits) + " cache hit" + (t.cache_hits === 1 ? "" : "s") +
      " · " + pct(t.cache_hits / t.cache_lookups) + " of " + int(t.cache_lookups) + " cached calls" :
      "what cached answers originally cost";
    hits.setAttribute("data-value", String(t.cache_hits));
    var unknown = $("t-unknown");
    unknown.textContent = t.unknown_cost_calls ? int(t.unknown_cost_calls) + " unpriced call" +
      (t.unknown_cost_calls === 1 ? "" : "s") + " not included" : "all calls priced";
    unknown.setAttribute("data-value", String(t.unknown_cost_calls));
    var errs = $("t-errors");
    errs.textContent = int(t.errors) + " error" + (t.errors === 1 ? "" : "s") +
      (t.calls ? " · " + pct(t.errors / t.calls) : "");
    errs.setAttribute("data-value", String(t.errors));
    errs.className = "kpi-sub" + (t.errors ? " bad" : "");
    $("t-cached").textContent = compact(t.cached_input_tokens) + " cached · " + compact(t.cache_write_tokens) + " cache writes";
    $("t-reasoning").textContent = compact(t.reasoning_tokens) + " reasoning";
  }

  // ------------------------------------------------------------------ chart

  function niceStep(max, ticks) {
    var raw = max / ticks;
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var norm = raw / mag;
    var step = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10;
    return step * mag;
  }

  function bucketList(ov) {
    var hour = ov.bucket === "hour";
    var stepMs = hour ? 3600e3 : 86400e3;
    var known = ov.spend.buckets.map(function (b) { return new Date(b).getTime(); });
    var end = new Date(ov.now).getTime();
    var start = ov.since ? new Date(ov.since).getTime() : (known.length ? known[0] : end);
    start = Math.floor(start / stepMs) * stepMs;
    var out = [];
    for (var t = start; t <= end && out.length < 2000; t += stepMs) out.push(t);
    known.forEach(function (k) { if (out.indexOf(k) < 0) out.push(k); });
    out.sort(function (a, b) { return a - b; });
    return out;
  }

  function renderChart(ov) {
    var box = $("chart");
    var legend = $("legend");
    clear(box);
    clear(legend);
    var hour = ov.bucket === "hour";
    $("chart-note").textContent = "USD per " + (hour ? "hour" : "day") + " (UTC), billed per upstream attempt";
    var series = ov.spend.series;
    var total = series.reduce(function (a, s) { return a + Number(s.total); }, 0);
    if (!series.length || total === 0) {
      box.appendChild(el("div", "chart-empty", "No spend recorded in this window."));
      return;
    }
    var times = bucketList(ov);
    var pos = {};
    times.forEach(function (t, i) { pos[t] = i; });
    var stacks = times.map(function () { return 0; });
    var values = series.map(function (s) {
      var row = times.map(function () { return 0; });
      ov.spend.buckets.forEach(function (b, i) {
        var idx = pos[new Date(b).getTime()];
        row[idx] += Number(s.values[i]);
        stacks[idx] += Number(s.values[i]);
      });
      return row;
    });
    var W = Math.max(box.clientWidth || 900, 320), H = 260;
    var m = { l: 64, r: 12, t: 12, b: 28 };
    var iw = W - m.l - m.r, ih = H - m.t - m.b;
    var max = Math.max.apply(null, stacks) || 1;
    var step = niceStep(max, 4);
    var top = Math.ceil(max / step) * step;
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "Spend over time by provider" });
    for (var v = 0; v <= top + step / 2; v += step) {
      var y = m.t + ih - (v / top) * ih;
      root.appendChild(svg("line", { x1: m.l, x2: W - m.r, y1: y, y2: y, class: "grid" }));
      var label = svg("text", { x: m.l - 8, y: y + 4, "text-anchor": "end", class: "axis" });
      label.textContent = money(v.toPrecision(6));
      root.appendChild(label);
    }
    var slot = iw / times.length;
    var bw = Math.max(1, Math.min(48, slot * 0.72));
    times.forEach(function (t, i) {
      var x = m.l + i * slot + (slot - bw) / 2;
      var base = m.t + ih;
      series.forEach(function (s, si) {
        var val = values[si][i];
        if (!val) return;
        var h = (val / top) * ih;
        base -= h;
        var r = svg("rect", { x: x, y: base, width: bw, height: Math.max(h, 0.5), fill: PALETTE[si % PALETTE.length],
                               class: "bar", rx: bw > 6 ? 2 : 0 });
        var tip = svg("title", {});
        tip.textContent = s.name + " · " + fmtBucket(t, hour, true) + " · " + money(String(val));
        r.appendChild(tip);
        root.appendChild(r);
      });
    });
    var every = Math.max(1, Math.ceil(times.length / Math.max(2, Math.floor(iw / 90))));
    times.forEach(function (t, i) {
      if (i % every !== 0) return;
      var tx = svg("text", { x: m.l + i * slot + slot / 2, y: H - 8, "text-anchor": "middle", class: "axis" });
      tx.textContent = fmtBucket(t, hour, false);
      root.appendChild(tx);
    });
    box.appendChild(root);
    series.forEach(function (s, si) {
      var item = el("span", "legend-item");
      var sw = el("span", "swatch");
      sw.style.background = PALETTE[si % PALETTE.length];
      item.appendChild(sw);
      item.appendChild(el("span", "", s.name));
      var label = Number(s.total) === 0 && s.unpriced ? "unpriced" : money(s.total);
      if (Number(s.total) !== 0 && s.unpriced) label += " + " + int(s.unpriced) + " unpriced";
      item.appendChild(el("span", "muted", label));
      legend.appendChild(item);
    });
  }

  function fmtBucket(t, hour, long) {
    var d = new Date(t);
    var day = d.toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
    if (!hour) return day;
    var hh = String(d.getUTCHours()).padStart(2, "0") + ":00";
    return long || d.getUTCHours() === 0 ? day + " " + hh : hh;
  }

  // ------------------------------------------------------------------ tables

  function head(table, cols) {
    var thead = el("thead");
    var tr = el("tr");
    cols.forEach(function (c) {
      var th = el("th", c.num ? "num" : "", c.label);
      tr.appendChild(th);
    });
    thead.appendChild(tr);
    table.appendChild(thead);
  }

  function cell(tr, text, cls) {
    var td = el("td", cls || "", text);
    tr.appendChild(td);
    return td;
  }

  function emptyRow(tbody, span, text) {
    var tr = el("tr");
    var td = el("td", "empty", text);
    td.colSpan = span;
    tr.appendChild(td);
    tbody.appendChild(tr);
  }

  function nameCell(tr, name, sub, share) {
    var td = el("td");
    td.appendChild(el("span", "name", name));
    if (sub) td.appendChild(el("span", "sub", sub));
    if (share !== undefined) {
      var bar = el("div", "share");
      var fill = el("span");
      fill.style.width = Math.max(0, Math.min(100, share * 100)).toFixed(1) + "%";
      bar.appendChild(fill);
      td.appendChild(bar);
    }
    tr.appendChild(td);
  }

  function spendTable(table, rows, nameOf) {
    clear(table);
    head(table, [{ label: "" }, { label: "Calls", num: true }, { label: "Errors", num: true },
                 { label: "Tokens in / out", num: true }, { label: "Cost", num: true }]);
    table.tHead.rows[0].cells[0].textContent = table.getAttribute("data-label") || "Name";
    var tbody = el("tbody");
    var sorted = rows.slice().sort(function (a, b) { return Number(b.cost) - Number(a.cost) || b.calls - a.calls; });
    var top = sorted.length ? Math.max(Number(sorted[0].cost), 0) : 0;
    sorted.forEach(function (r) {
      var tr = el("tr");
      var n = nameOf(r);
      nameCell(tr, n[0], n[1], top > 0 ? Number(r.cost) / top : 0);
      cell(tr, int(r.calls), "num");
      cell(tr, r.errors ? int(r.errors) : "–", "num" + (r.errors ? " rate-bad" : ""));
      cell(tr, compact(r.input_tokens) + " / " + compact(r.output_tokens), "num");
      var allUnpriced = r.unknown_cost_calls && r.unknown_cost_calls === r.calls;
      var c = cell(tr, allUnpriced ? "unpriced" : money(r.cost), "num" + (allUnpriced ? " muted" : ""));
      if (r.unknown_cost_calls && !allUnpriced) {
        c.appendChild(el("span", "sub", "+" + int(r.unknown_cost_calls) + " unpriced"));
      }
      tbody.appendChild(tr);
    });
    if (!sorted.length) emptyRow(tbody, 5, "No calls in this window.");
    table.appendChild(tbody);
  }

  function renderModels(rows) {
    var t = $("by-model");
    t.setAttribute("data-label", "Model");
    spendTable(t, rows, function (r) { return [r.model || "(none)", r.provider || "no provider reached"]; });
  }

  function renderKeys(rows) {
    var t = $("by-key");
    t.setAttribute("data-label", "Key");
    spendTable(t, rows, function (r) { return [r.key_name || r.key_id || "(no key)", r.key_id || ""]; });
  }

  function renderAttribution(id, label, rows, field, none) {
    var t = $(id);
    t.setAttribute("data-label", label);
    spendTable(t, rows, function (r) { return [r[field] === null ? none : r[field], ""]; });
  }

  function renderLatency(rows) {
    var table = $("latency");
    clear(table);
    head(table, [{ label: "Provider" }, { label: "Attempts", num: true }, { label: "Error rate", num: true },
                 { label: "Latency p50", num: true }, { label: "p90", num: true }, { label: "p99", num: true },
                 { label: "TTFT p50", num: true }, { label: "p90", num: true }, { label: "p99", num: true }]);
    var tbody = el("tbody");
    rows.forEach(function (r) {
      var tr = el("tr");
      nameCell(tr, r.provider);
      cell(tr, int(r.attempts), "num");
      cell(tr, pct(r.error_rate) + (r.errors ? " (" + int(r.errors) + ")" : ""),
           "num" + (r.error_rate >= 0.05 ? " rate-bad" : ""));
      [r.latency_p50_ms, r.latency_p90_ms, r.latency_p99_ms, r.ttft_p50_ms, r.ttft_p90_ms, r.ttft_p99_ms]
        .forEach(function (v) { cell(tr, ms(v), "num"); });
      tbody.appendChild(tr);
    });
    if (!rows.length) emptyRow(tbody, 9, "No upstream attempts in this window.");
    table.appendChild(tbody);
  }

  function pill(text, kind) { return el("span", "pill " + (kind || ""), text); }

  function renderCalls(calls) {
    var table = $("calls");
    clear(table);
    head(table, [{ label: "Time" }, { label: "Key" }, { label: "Model" }, { label: "Status" },
                 { label: "Tokens in / out", num: true }, { label: "Cost", num: true },
                 { label: "Latency", num: true }, { label: "TTFT", num: true }, { label: "Tries", num: true }]);
    var tbody = el("tbody");
    calls.forEach(function (c) {
      var tr = el("tr", "call");
      tr.setAttribute("data-request-id", c.request_id);
      tr.tabIndex = 0;
      cell(tr, when(c.time), "num");
      nameCell(tr, c.key_name || c.key_id || "–");
      var served = c.provider ? c.provider + "/" + (c.upstream_model || "?") : "no provider reached";
      nameCell(tr, c.requested_model, served);
      var st = el("td");
      st.appendChild(pill(String(c.status), c.outcome));
      if (c.cache === "hit") st.appendChild(pill("cache", "cache_hit"));
      if (c.stream) st.appendChild(el("span", "sub", "stream"));
      tr.appendChild(st);
      cell(tr, compact(c.input_tokens) + " / " + compact(c.output_tokens) + (c.estimated ? " ~" : ""), "num");
      cell(tr, money(c.cost), "num");
      cell(tr, ms(c.latency_ms), "num");
      cell(tr, ms(c.ttft_ms), "num");
      cell(tr, String(c.attempts.length), "num");
      var detail = null;
      function toggle() {
        if (detail) { detail.remove(); detail = null; tr.classList.remove("open"); return; }
        detail = attemptsRow(c);
        tr.after(detail);
        tr.classList.add("open");
      }
      tr.addEventListener("click", toggle);
      tr.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); toggle(); } });
      tbody.appendChild(tr);
    });
    if (!calls.length) emptyRow(tbody, 9, state.model ? "No calls for this model." : "No calls recorded yet.");
    table.appendChild(tbody);
  }

  function attemptsRow(c) {
    var tr = el("tr", "detail");
    var td = el("td");
    td.colSpan = 9;
    var meta = el("div", "detail-meta");
    [["request", c.request_id], ["route", c.route || "–"], ["dialect", c.client_dialect],
     ["price source", c.price_source || "–"], ["cache", c.cache]].forEach(function (kv) {
      var s = el("span");
      s.appendChild(el("b", "", kv[0]));
      s.appendChild(document.createTextNode(kv[1]));
      meta.appendChild(s);
    });
    if (c.error) {
      var e = el("span", "rate-bad");
      e.textContent = c.error;
      meta.appendChild(e);
    }
    td.appendChild(meta);
    var t = el("table", "attempts");
    var cols = ["#", "Role", "Provider / model", "Outcome", "HTTP", "TTFT", "Latency", "Tokens in / out", "Cost", "Error"];
    var thead = el("thead");
    var hr = el("tr");
    cols.forEach(function (h) { hr.appendChild(el("th", "", h)); });
    thead.appendChild(hr);
    t.appendChild(thead);
    var tb = el("tbody");
    c.attempts.forEach(function (a) {
      var r = el("tr", "attempt");
      cell(r, String(a.attempt_no));
      cell(r, a.role);
      cell(r, a.provider + "/" + a.model, "mono");
      var o = el("td");
      o.appendChild(pill(a.outcome, a.outcome));
      r.appendChild(o);
      cell(r, a.status === null ? "–" : String(a.status));
      cell(r, ms(a.ttft_ms));
      cell(r, ms(a.latency_ms));
      cell(r, int(a.input_tokens) + " / " + int(a.output_tokens) + (a.estimated ? " (est.)" : ""));
      cell(r, a.cost === null && !a.input_tokens && !a.output_tokens ? "–" : money(a.cost));
      cell(r, a.error || "", "err");
      tb.appendChild(r);
    });
    if (!c.attempts.length) {
      var er = el("tr");
      var etd = el("td", "empty", "No upstream attempt (the request was refused before routing).");
      etd.colSpan = cols.length;
      er.appendChild(etd);
      tb.appendChild(er);
    }
    t.appendChild(tb);
    td.appendChild(t);
    tr.appendChild(td);
    return tr;
  }

  // ------------------------------------------------------------------ wiring

  function init() {
    var buttons = document.querySelectorAll("#ranges button");
    Array.prototype.forEach.call(buttons, function (b) {
      b.addEventListener("click", function () {
        Array.prototype.forEach.call(buttons, function (x) { x.classList.remove("active"); });
        b.classList.add("active");
        state.range = b.getAttribute("data-range");
        load();
      });
    });
    var filter = $("model-filter");
    if (filter) {
      var timer = null;
      filter.addEventListener("input", function () {
        clearTimeout(timer);
        timer = setTimeout(function () { state.model = filter.value.trim(); loadCalls(); }, 250);
      });
    }
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () { if (state.overview) renderChart(state.overview); }, 150);
    });
    load();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
