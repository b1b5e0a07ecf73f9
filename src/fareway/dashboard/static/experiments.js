// Fareway dashboard, experiments page: each experiment's decision and its win rate with the
// always-valid interval over time.  DOM calls and textContent only; no external resources.
(function () {
  "use strict";
  var SVG_NS = "http://www.w3.org/2000/svg";

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
  function pct(x) { return x === null || x === undefined ? "–" : (x * 100).toFixed(1) + "%"; }
  function ms(x) { return x === null || x === undefined ? "–" : Math.round(x) + " ms"; }

  function get(url) {
    return fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } }).then(function (r) {
      if (r.status === 401) { window.location.href = "/ui"; throw new Error("signed out"); }
      if (!r.ok) throw new Error(url + ": HTTP " + r.status);
      return r.json();
    });
  }

  function chart(exp) {
    var W = 720, H = 220, L = 44, R = 12, T = 10, B = 28;
    var pts = exp.series || [];
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, width: "100%", class: "chart-svg", role: "img",
      "aria-label": "win rate and interval over judged pairs" });
    var n = pts.length ? pts[pts.length - 1].pairs : 1;
    function x(p) { return L + (W - L - R) * (p / Math.max(1, n)); }
    function y(v) { return T + (H - T - B) * (1 - v); }
    [0, 0.25, 0.5, 0.75, 1].forEach(function (v) {
      root.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e5e7eb" }));
      var t = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#6b7280" });
      t.textContent = (v * 100) + "%";
      root.appendChild(t);
    });
    var m = 0.5 - exp.settings.margin;
    root.appendChild(svg("line", { x1: L, x2: W - R, y1: y(m), y2: y(m), stroke: "#b45309", "stroke-dasharray": "4 3" }));
    if (pts.length) {
      var band = "M" + pts.map(function (p) { return x(p.pairs) + "," + y(p.upper); }).join(" L");
      band += " L" + pts.slice().reverse().map(function (p) { return x(p.pairs) + "," + y(p.lower); }).join(" L") + " Z";
      root.appendChild(svg("path", { d: band, fill: "#c7d2fe", "fill-opacity": 0.7, stroke: "none" }));
      var line = "M" + pts.map(function (p) { return x(p.pairs) + "," + y(p.win_rate); }).join(" L");
      root.appendChild(svg("path", { d: line, fill: "none", stroke: "#4338ca", "stroke-width": 2 }));
    }
    var xl = svg("text", { x: W - R, y: H - 6, "text-anchor": "end", "font-size": 11, fill: "#6b7280" });
    xl.textContent = n + " judged pairs";
    root.appendChild(xl);
    return root;
  }

  function card(exp) {
    var c = el("section", "card experiment");
    c.setAttribute("data-name", exp.name);
    var head = el("div", "card-head");
    head.appendChild(el("h2", null, exp.name + " · " + exp.model + " (" + exp.mode + ", " + exp.status + ")"));
    head.appendChild(el("span", "muted small", exp.control + " vs " + exp.challenger + " · judge " + exp.judge));
    c.appendChild(head);
    var p = exp.pairs;
    c.appendChild(el("p", "decision", "Decision: " + exp.decision.text));
    c.appendChild(el("p", "muted", "win rate " + pct(exp.win_rate) + " [" + pct(exp.interval.lower) + ", " +
      pct(exp.interval.upper) + "] · " + p.judged + " pairs: " + p.wins + " wins, " + p.ties + " ties, " +
      p.losses + " losses · order inconsistency " + pct(p.order_inconsistency_rate) + " · spend $" +
      exp.spend.judge_and_shadow_usd + " of $" + exp.spend.budget_usd));
    c.appendChild(chart(exp));
    var tbl = el("table", "tbl");
    var hr = el("tr");
    ["variant", "calls", "cost/call", "TTFT p50", "TTFT p95", "total p50", "total p95", "errors"].forEach(function (h) {
      hr.appendChild(el("th", null, h));
    });
    tbl.appendChild(hr);
    Object.keys(exp.variants || {}).forEach(function (k) {
      var v = exp.variants[k], tr = el("tr");
      [k, v.calls, v.cost_per_call_usd === null ? "–" : "$" + v.cost_per_call_usd, ms(v.ttft_p50_ms),
       ms(v.ttft_p95_ms), ms(v.latency_p50_ms), ms(v.latency_p95_ms), pct(v.error_rate)].forEach(function (t) {
        tr.appendChild(el("td", null, t));
      });
      tbl.appendChild(tr);
    });
    c.appendChild(tbl);
    (exp.warnings || []).concat(exp.notes || []).forEach(function (w) { c.appendChild(el("p", "muted small", w)); });
    return c;
  }

  function load() {
    var box = document.getElementById("experiments"), status = document.getElementById("status");
    get("/ui/api/experiments").then(function (list) {
      return Promise.all(list.data.map(function (e) {
        return get("/ui/api/experiments/" + encodeURIComponent(e.name));
      }));
    }).then(function (all) {
      while (box.firstChild) box.removeChild(box.firstChild);
      all.forEach(function (e) { box.appendChild(card(e)); });
      status.textContent = all.length ? "" : "No experiments. Add an [experiments.NAME] table to the config.";
      document.getElementById("app").setAttribute("data-state", "ready");
    }).catch(function (err) {
      status.textContent = String(err.message || err);
      status.className = "status error";
    });
  }
  load();
  setInterval(load, 10000);
})();
