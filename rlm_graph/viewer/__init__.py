"""The trace viewer: one self-contained HTML page for a ``--trace`` file (``rlm-graph view``).

- :func:`load_trace` reads a summary ``.json`` or a ``.jsonl`` stream (also a cut-short one).
- :func:`render_html` turns a trace into the page (inline CSS/JS, no network).
- :func:`main` is ``rlm-graph view TRACE [-o FILE.html] [--open]``.
"""

from __future__ import annotations

from rlm_graph.viewer.cli import main
from rlm_graph.viewer.load import TraceError, load_trace
from rlm_graph.viewer.render import render_html

__all__ = ["TraceError", "load_trace", "main", "render_html"]
