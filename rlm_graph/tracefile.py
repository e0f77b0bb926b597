"""Write a run's trace while it happens: a JSONL event stream, then a summary at the end.

A :class:`TraceWriter` is given the ``--trace`` path. What lands on disk depends on its suffix:

- ``X.jsonl``: only the stream. Line 1 is a header record
  ``{"record": "meta", "format": "rlm-graph-trace", "version": 1, "meta": {...}}``; then one
  custom stream event per line, as emitted (each has an ``"event"`` key); :meth:`close` appends
  an end record ``{"record": "end", "result": {...}, "error": ...}``.
- ``X.json``: the same stream goes to the sibling ``X.jsonl`` while the run goes on; at the end
  ``X.json`` holds the summary (:func:`summarize`): meta, the result keys, the error, the run
  tree built by :class:`~rlm_graph.progress.TraceBuilder` and the raw ``events`` list.
- ``X.html`` / ``X.htm``: the stream goes to ``X.jsonl``; at the end the self-contained viewer
  page (:func:`rlm_graph.viewer.render_html` of the summary) is written to ``X.html``.
- Any other suffix is treated like ``.json`` (the stream goes to the path with ``.jsonl``).

The ``X.jsonl`` of the last two cases is kept after a clean end: it is the same data, and the
file a crashed run leaves behind. Crash safety: every line is written and flushed to the kernel
before :meth:`TraceWriter.event` returns, so a process killed at any point (even by SIGKILL)
leaves a JSONL whose lines are whole, except at most the last one; ``rlm-graph view`` reads
such a file. The summary files are written to a temporary name and renamed, so they are either
absent or complete. Lines are ASCII (``ensure_ascii``): model-written text with lone
surrogates or U+2028 cannot break a line or the encoding.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from rlm_graph.progress import TraceBuilder

__all__ = [
    "FORMAT",
    "VERSION",
    "TraceWriter",
    "stream_path",
    "summarize",
]

FORMAT = "rlm-graph-trace"
VERSION = 1

RESULT_KEYS = ("answer", "usage", "iterations", "stopped_reason")
# What a trace keeps of the graph's final values: not the transcript, the (possibly huge) input
# or the loop's bookkeeping. ``best_answer`` is the partial answer of a run that failed.
_KEPT_RESULT_KEYS = (*RESULT_KEYS, "best_answer")


def stream_path(path: str | os.PathLike[str]) -> Path:
    """Where the JSONL stream of a ``--trace`` path goes (the path itself for ``.jsonl``)."""
    p = Path(path)
    return p if p.suffix.lower() == ".jsonl" else p.with_suffix(".jsonl")


def _dumps(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=True, default=str, indent=indent)


def clean_result(result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of the run's final values a trace keeps: answer, usage, iterations,
    stopped_reason, and best_answer when there is no answer."""
    if result is None:
        return None
    kept = {k: result[k] for k in _KEPT_RESULT_KEYS if k in result}
    if kept.get("answer") is not None:
        kept.pop("best_answer", None)
    return kept


def summarize(
    meta: Mapping[str, Any],
    events: list[dict[str, Any]],
    result: Mapping[str, Any] | None,
    error: str | None,
    *,
    complete: bool = True,
) -> dict[str, Any]:
    """The summary of a trace: meta, result keys at the top level, error, tree and raw events.

    ``complete`` is False for a stream that ended without its end record (a crashed run).
    """
    builder = TraceBuilder()
    for event in events:
        builder.add(event)
    res = clean_result(result) or {}
    return {
        "format": FORMAT,
        "version": VERSION,
        "meta": dict(meta),
        **{key: res.get(key) for key in RESULT_KEYS},
        "result": res,
        "error": error,
        "complete": complete,
        "n_events": len(events),
        "root": builder.tree(),
        "orphans": builder.orphans(),
        "events": events,
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class TraceWriter:
    """Streams a run's events to JSONL as they arrive and writes the summary on :meth:`close`.

    See the module docstring for what each suffix of ``path`` produces. ``meta`` (model,
    settings, query…) must be JSON-ready; anything else is written as ``str()``. Thread-safe.
    Usable as a context manager: leaving the block with an exception closes with that error.
    Opening the file raises ``OSError`` at once (e.g. a missing directory), before any run.
    """

    def __init__(self, path: str | os.PathLike[str], meta: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.stream_path = stream_path(self.path)
        self.meta = dict(meta)
        # Kept in memory only when a summary is written at the end (not for a bare .jsonl).
        self.events: list[dict[str, Any]] = []
        self._keep = self.path != self.stream_path
        self.closed = False
        self._lock = threading.Lock()
        self._fh: IO[str] | None = open(self.stream_path, "w", encoding="ascii")
        self._line({"record": "meta", "format": FORMAT, "version": VERSION, "meta": self.meta})

    def _line(self, record: Mapping[str, Any]) -> None:
        assert self._fh is not None
        self._fh.write(_dumps(record) + "\n")
        self._fh.flush()

    def event(self, event: Mapping[str, Any]) -> None:
        """Append one custom stream event to the stream, on disk before this returns."""
        with self._lock:
            if self._fh is None:
                raise ValueError(f"trace {self.path} is closed; events can no longer be added")
            record = dict(event)
            if self._keep:
                self.events.append(record)
            self._line(record)

    def close(self, result: Mapping[str, Any] | None = None, error: str | None = None) -> None:
        """End the stream with an end record and write the summary file, if the suffix asks.

        ``result`` is the run's final values (see :func:`clean_result` for what is kept);
        ``error`` the one-line failure, if any. Idempotent: later calls do nothing.
        """
        with self._lock:
            if self._fh is None:
                return
            try:
                self._line({"record": "end", "result": clean_result(result), "error": error})
                os.fsync(self._fh.fileno())
            finally:
                self._fh.close()
                self._fh = None
                self.closed = True
            if self.path == self.stream_path:
                return
            summary = summarize(self.meta, self.events, result, error)
            if self.path.suffix.lower() in (".html", ".htm"):
                from rlm_graph.viewer import render_html

                _write_atomic(self.path, render_html(summary))
            else:
                _write_atomic(self.path, _dumps(summary, indent=1) + "\n")

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        error = f"{exc_type.__name__}: {exc}" if exc_type is not None else None
        self.close(None, error)
