"""The dashboard's HTML: a login form and the one-page shell that ``static/app.js`` fills from
``/ui/api/*``.  Everything is self-contained (no CDN, no web fonts): it works offline.

The pages carry a strict Content-Security-Policy (scripts and styles only from /ui/static, no inline
script), and every value put into HTML here goes through :func:`html.escape`; the script builds
the DOM with ``textContent`` only, so model names and key names (user input) are never markup.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources

STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

SECURITY_HEADERS = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
]


@cache
def static_file(name: str) -> bytes | None:
    """A file shipped in ``fareway/dashboard/static`` (a flat folder), or None."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    if not any(name.endswith(ext) for ext in STATIC_TYPES):
        return None
    f = resources.files("fareway.dashboard").joinpath("static", name)
    try:
        return f.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def static_type(name: str) -> str:
    for ext, ctype in STATIC_TYPES.items():
        if name.endswith(ext):
            return ctype
    return "application/octet-stream"


def _head(title: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        '<link rel="stylesheet" href="/ui/static/style.css">'
        '<link rel="icon" href="/ui/static/favicon.svg" type="image/svg+xml">'
        "</head>"
    )


def login_page(error: str | None = None, version: str = "") -> bytes:
    err = f'<p class="login-error" role="alert" id="login-error">{html.escape(error)}</p>' if error else ""
    body = f"""<body class="login-body">
<main class="login-card">
  <div class="brand"><span class="brand-mark" aria-hidden="true"></span>Fareway</div>
  <h1>Sign in to the dashboard</h1>
  <p class="muted">Use the master key or an admin key. The key is sent once; the browser keeps only a
  session cookie.</p>
  {err}
  <form method="post" action="/ui/login" autocomplete="off">
    <label for="key">Admin key</label>
    <input id="key" name="key" type="password" required autofocus spellcheck="false" placeholder="fw-...">
    <button type="submit" id="login-submit">Sign in</button>
  </form>
  <p class="muted small">Fareway {html.escape(version)}</p>
</main>
</body></html>"""
    return (_head("Fareway · sign in") + body).encode()


def app_page(user: str, version: str = "") -> bytes:
    body = f"""<body>
<header class="topbar">
  <div class="brand"><span class="brand-mark" aria-hidden="true"></span>Fareway</div>
  <nav class="ranges" id="ranges" aria-label="Time range">
    <button type="button" data-range="24h">24 hours</button>
    <button type="button" data-range="7d" class="active">7 days</button>
    <button type="button" data-range="30d">30 days</button>
    <button type="button" data-range="90d">90 days</button>
    <button type="button" data-range="all">All</button>
  </nav>
  <a href="/ui/experiments" id="experiments-link">Experiments</a>
  <div class="who">
    <span class="muted">{html.escape(user)}</span>
    <form method="post" action="/ui/logout"><button type="submit" class="link" id="logout">Sign out</button></form>
  </div>
</header>
<main class="wrap" id="app" data-state="loading">
  <p class="status" id="status" role="status">Loading…</p>
  <section class="kpis" id="totals" aria-label="Totals">
    <div class="kpi"><div class="kpi-label">Spend</div><div class="kpi-value" id="t-cost">&ndash;</div>
      <div class="kpi-sub" id="t-unknown"></div></div>
    <div class="kpi"><div class="kpi-label">Calls</div><div class="kpi-value" id="t-calls">&ndash;</div>
      <div class="kpi-sub" id="t-errors"></div></div>
    <div class="kpi"><div class="kpi-label">Input tokens</div><div class="kpi-value" id="t-input">&ndash;</div>
      <div class="kpi-sub" id="t-cached"></div></div>
    <div class="kpi"><div class="kpi-label">Output tokens</div><div class="kpi-value" id="t-output">&ndash;</div>
      <div class="kpi-sub" id="t-reasoning"></div></div>
    <div class="kpi"><div class="kpi-label">Saved by cache</div><div class="kpi-value" id="t-saved">&ndash;</div>
      <div class="kpi-sub" id="t-hits"></div></div>
  </section>
  <section class="card">
    <div class="card-head"><h2>Spend over time by provider</h2><span class="muted small" id="chart-note"></span></div>
    <div id="chart" class="chart"></div>
    <div id="legend" class="legend"></div>
  </section>
  <div class="grid2">
    <section class="card"><div class="card-head"><h2>Spend by model</h2></div>
      <table class="tbl" id="by-model"></table></section>
    <section class="card"><div class="card-head"><h2>Spend by key</h2></div>
      <table class="tbl" id="by-key"></table></section>
  </div>
  <div class="grid2">
    <section class="card"><div class="card-head"><h2>Spend by user</h2></div>
      <table class="tbl" id="by-user"></table></section>
    <section class="card"><div class="card-head"><h2>Spend by tag</h2>
      <span class="muted small">a call with several tags counts under each</span></div>
      <table class="tbl" id="by-tag"></table></section>
  </div>
  <section class="card"><div class="card-head"><h2>Providers: latency, time to first token, errors</h2>
    <span class="muted small">per upstream attempt; percentiles over successful attempts</span></div>
    <table class="tbl" id="latency"></table></section>
  <section class="card"><div class="card-head"><h2>Recent calls
    <span class="muted small">· click a call to see its attempts</span></h2>
    <input class="filter" id="model-filter" type="search" placeholder="Filter by model (exact)"
      aria-label="Filter recent calls by model" spellcheck="false"></div>
    <table class="tbl calls" id="calls"></table></section>
  <footer class="muted small">Fareway {html.escape(version)} · costs are provider list prices,
    exact decimals; unpriced calls are counted, never shown as $0.</footer>
</main>
<script src="/ui/static/app.js" defer></script>
</body></html>"""
    return (_head("Fareway · usage") + body).encode()
