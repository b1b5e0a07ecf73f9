"""The dashboard's experiments page (``/ui/experiments``): a shell that ``static/experiments.js``
fills from ``/ui/api/experiments``: each experiment's decision, and its win rate with the
always-valid interval after each judged pair (the interval over time), drawn as SVG.

Same rules as the main page (fareway.dashboard.page): no inline script, a strict CSP, the data
put into the DOM with ``textContent`` only.
"""

from __future__ import annotations

from fareway.dashboard.page import SECURITY_HEADERS as SECURITY_HEADERS
from fareway.dashboard.page import _head

HTML = "text/html; charset=utf-8"


def page() -> bytes:
    body = """<body>
<header class="topbar">
  <div class="brand"><span class="brand-mark" aria-hidden="true"></span>Fareway</div>
  <nav><a href="/ui">Usage</a> · <strong>Experiments</strong></nav>
</header>
<main class="wrap" id="app" data-state="loading">
  <p class="status" id="status" role="status">Loading…</p>
  <div id="experiments"></div>
  <footer class="muted small">The band is an always-valid 95% confidence sequence for the challenger's
    win rate (ties count half): it may be read after every pair. The dashed line is 0.5 minus the margin.</footer>
</main>
<script src="/ui/static/experiments.js" defer></script>
</body></html>"""
    return (_head("Fareway · experiments") + body).encode()
