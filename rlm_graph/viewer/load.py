"""Read a trace from disk: the summary JSON, or a JSONL stream (also one a crash cut short)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlm_graph.tracefile import FORMAT, RESULT_KEYS, summarize

__all__ = ["TraceError", "load_trace", "normalize"]


class TraceError(ValueError):
    """The file is not a trace this viewer can read; the message says what is wrong."""


def _parse_jsonl(data: bytes, name: str) -> dict[str, Any]:
    # Split on "\n" only: str.splitlines() would also split inside text at U+2028 and friends.
    lines = data.split(b"\n")
    meta: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    end: dict[str, Any] | None = None
    cut = False
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as exc:
            if number == len(lines):  # the unterminated last line of a killed writer
                cut = True
                break
            raise TraceError(
                f"{name}: line {number} is not JSON ({exc}); is this a trace?"
            ) from exc
        if not isinstance(record, dict):
            raise TraceError(f"{name}: line {number} is not a JSON object; is this a trace?")
        kind = record.get("record")
        if kind == "meta":
            meta = dict(record.get("meta") or {})
        elif kind == "end":
            end = record
        elif isinstance(record.get("event"), str):
            events.append(record)
    if not events and not meta and end is None:
        raise TraceError(f"{name}: no trace records found; expected an rlm-graph --trace file")
    result = end.get("result") if end else None
    error = end.get("error") if end else None
    trace = summarize(meta, events, result, error, complete=end is not None)
    trace["cut"] = cut
    return trace


def normalize(trace: Mapping[str, Any]) -> dict[str, Any]:
    """Any summary shape (this format, or the older CLI's flat JSON) as this format's dict.

    The older shape had the meta keys at the top level and ``events`` as a count.
    """
    if trace.get("format") == FORMAT and isinstance(trace.get("events"), list):
        return dict(trace)
    if isinstance(trace.get("events"), list):
        events = [e for e in trace["events"] if isinstance(e, dict)]
        meta: dict[str, Any] = dict(trace["meta"]) if isinstance(trace.get("meta"), dict) else {}
        result = {k: trace.get(k) for k in RESULT_KEYS}
        out = summarize(meta, events, result, trace.get("error"))
        return out
    known = {*RESULT_KEYS, "error", "events", "root", "orphans", "format", "version"}
    meta = {k: v for k, v in trace.items() if k not in known}
    if "root" not in trace:
        raise TraceError("not an rlm-graph trace: it has neither events nor a run tree ('root')")
    return {
        "format": FORMAT,
        "meta": dict(trace.get("meta") or meta),
        **{k: trace.get(k) for k in RESULT_KEYS},
        "error": trace.get("error"),
        "complete": True,
        "n_events": trace.get("events") if isinstance(trace.get("events"), int) else None,
        "root": trace.get("root"),
        "orphans": trace.get("orphans") or [],
        "events": None,
    }


def load_trace(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``path``: a summary ``.json``, a ``.jsonl`` stream (a partial last line is dropped
    and ``complete`` is False when the end record is missing), as a normalized summary dict.

    Raises ``FileNotFoundError`` for a missing file and :class:`TraceError` for anything that
    is not a trace.
    """
    p = Path(path)
    data = p.read_bytes()
    head = data.lstrip()[:1]
    if head != b"{":
        raise TraceError(f"{p}: not a JSON or JSONL trace (it does not start with '{{')")
    try:
        whole = json.loads(data)
    except ValueError:
        return _parse_jsonl(data, str(p))
    if not isinstance(whole, dict):
        raise TraceError(f"{p}: not a trace (a JSON object was expected)")
    if whole.get("record") == "meta" or isinstance(whole.get("event"), str):
        return _parse_jsonl(data, str(p))  # a one-line stream is valid JSON too
    return normalize(whole)
