"""The board's web side: its dashboard, JSON API and ``/metrics`` (docs/dashboard.md).

==========================  ==================================================
:mod:`.dashboard`           the routes, served by :class:`agent.http.HttpServer`
:mod:`.events`              live updates as server-sent events
:mod:`.readings`            the newest readings of a collection, bounded
:mod:`.metrics`             the Prometheus text exposition of the status
:mod:`.token`               the local access token in the node's home
``static/``                 the page: HTML, CSS and a hand-written SVG plot
                            (``plot.js`` and ``base.css`` also serve Lichen Field)
==========================  ==================================================
"""

from __future__ import annotations

from .dashboard import Dashboard
from .metrics import render_metrics
from .token import load_token, make_token

__all__ = ["Dashboard", "load_token", "make_token", "render_metrics"]
