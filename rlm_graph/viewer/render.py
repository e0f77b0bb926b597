"""Render a trace as one self-contained HTML page: inline CSS and JS, data as embedded JSON."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from rlm_graph.viewer.load import normalize
from rlm_graph.viewer.model import view_model

__all__ = ["embed_json", "render_html"]

# After json.dumps(ensure_ascii=True) the text is ASCII (U+2028/2029 and lone surrogates are
# \u escapes); escaping these three as well means no "</script>", "<!--" or "]]>" can appear.
_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def embed_json(value: Any) -> str:
    """``value`` as JSON that is safe inside ``<script type="application/json">``."""
    text = json.dumps(value, ensure_ascii=True, default=str, separators=(",", ":"))
    return re.sub(r"[<>&]", lambda m: _UNSAFE[m.group(0)], text)


def _asset(name: str) -> str:
    return resources.files("rlm_graph.viewer").joinpath("assets").joinpath(name).read_text("utf-8")


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def render_html(trace: Mapping[str, Any]) -> str:
    """The viewer page for ``trace`` (a summary dict as written by ``--trace X.json``, or as
    returned by :func:`rlm_graph.viewer.load_trace`).

    The page needs no network: its Content-Security-Policy allows only its own inline style and
    script (by hash), so even text that slipped through as markup could not load or run anything.
    """
    model = view_model(normalize(trace))
    style, script = _asset("viewer.css"), _asset("viewer.js")
    parts = {
        "STYLE": style,
        "SCRIPT": script,
        "STYLE_HASH": _csp_hash(style),
        "SCRIPT_HASH": _csp_hash(script),
        "DATA": embed_json(model),
    }
    # One pass over the template only, so "@DATA@" inside the data is never substituted again.
    return re.sub(r"@([A-Z_]+)@", lambda m: parts[m.group(1)], _asset("page.html"))
