"""Turn the graph's custom stream events into a trajectory tree, live progress and a trace.

Everything here is built from the custom events documented in ``docs/ARCHITECTURE.md`` alone,
so it works the same for a local run, a child run deep in the recursion tree, or a run streamed
from a LangGraph server.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.tree import Tree

from rlm_graph.terminal import markup_safe, safe_quoted, safe_text

__all__ = [
    "LiveTree",
    "PlainProgress",
    "Progress",
    "TraceBuilder",
    "choose_progress",
    "shorten",
    "stream_with_progress",
]


def shorten(text: Any, limit: int = 60) -> str:
    """Collapse whitespace in ``text`` and cut it to ``limit`` characters with an ellipsis."""
    flat = " ".join(str(text if text is not None else "").split())
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)] + "…"


def _call_name(call: Mapping[str, Any]) -> str:
    """``llm_query`` / ``rlm_query`` / ``tool NAME`` as the code called it, noting a
    depth-capped rlm_query."""
    kind = str(call.get("kind") or "llm")
    function = str(call.get("function") or f"{kind}_query")
    if kind == "tool":
        return f"tool {function}"
    if function == "rlm_query" and kind == "llm":
        return "rlm_query (plain call: max depth)"
    return function


def tokens_of(usage: Mapping[str, Any] | None) -> int:
    """Total tokens of a usage dict (input + output when no total is reported)."""
    if not usage:
        return 0
    total = usage.get("total_tokens")
    if isinstance(total, int):
        return total
    return int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)


@dataclass
class _TracedIteration:
    number: int
    t: float
    thought: str = ""
    model_seconds: float | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    n_code_blocks: int = 0
    has_final: bool = False
    blocks: dict[int, dict[str, Any]] = field(default_factory=dict)
    subcalls: dict[str, dict[str, Any]] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    #: The compaction before this iteration's model call, if any (its event's fields).
    compaction: dict[str, Any] | None = None
    dead_end: bool = False

    def output_chars(self) -> int:
        return sum(int(b.get("output_chars") or 0) for b in self.blocks.values())

    def errors(self) -> int:
        return sum(1 for b in self.blocks.values() if b.get("error"))

    def to_json(self, runs: Mapping[str, _TracedRun]) -> dict[str, Any]:
        return {
            "iteration": self.number,
            "t": self.t,
            "thought": self.thought,
            "model_seconds": self.model_seconds,
            "usage": self.usage,
            "n_code_blocks": self.n_code_blocks,
            "has_final": self.has_final,
            "code_blocks": [self.blocks[i] for i in sorted(self.blocks)],
            "subcalls": list(self.subcalls.values()),
            "children": [runs[c].to_json(runs) for c in self.children if c in runs],
            "compaction": self.compaction,
            "dead_end": self.dead_end,
        }


_OBSERVATION_KEYS = (
    "index",
    "output",
    "output_chars",
    "error",
    "seconds",
    "timed_out",
    "restarted",
)


@dataclass
class _TracedRun:
    run_id: str
    parent_run_id: str | None
    depth: int
    t: float
    query: str = ""
    context_type: str | None = None
    context_chars: int | None = None
    iterations: list[_TracedIteration] = field(default_factory=list)
    answer: str | None = None
    stopped_reason: str | None = None
    n_iterations: int | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    ended: bool = False

    def current(self, number: int, t: float) -> _TracedIteration:
        """The iteration ``number``, created on first mention (events may arrive out of step)."""
        if not self.iterations or self.iterations[-1].number != number:
            for it in self.iterations:
                if it.number == number:
                    return it
            self.iterations.append(_TracedIteration(number=number, t=t))
        return self.iterations[-1]

    def to_json(self, runs: Mapping[str, _TracedRun]) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "parent_run_id": self.parent_run_id,
            "depth": self.depth,
            "t_start": self.t,
            "query": self.query,
            "context_type": self.context_type,
            "context_chars": self.context_chars,
            "answer": self.answer,
            "stopped_reason": self.stopped_reason,
            "n_iterations": self.n_iterations,
            "usage": self.usage,
            "seconds": self.seconds,
            "iterations": [it.to_json(runs) for it in self.iterations],
        }


class TraceBuilder:
    """Accumulates custom events into a tree of runs → iterations → code blocks / sub-calls.

    Child runs hang under the parent iteration that was current when they started, which is
    where the ``rlm_query`` call that spawned them was executing.
    """

    def __init__(self) -> None:
        self.runs: dict[str, _TracedRun] = {}
        self.root_id: str | None = None
        self.n_events = 0

    def add(self, event: Mapping[str, Any]) -> None:
        """Fold one custom event into the tree. Unknown or malformed events are ignored."""
        kind = event.get("event")
        run_id = event.get("run_id")
        if not isinstance(kind, str) or not isinstance(run_id, str):
            return
        self.n_events += 1
        t = float(event.get("t") or 0.0)
        run = self.runs.get(run_id)
        if run is None:
            parent = event.get("parent_run_id")
            run = _TracedRun(
                run_id=run_id,
                parent_run_id=parent if isinstance(parent, str) else None,
                depth=int(event.get("depth") or 0),
                t=t,
            )
            self.runs[run_id] = run
            if run.parent_run_id is None:
                if self.root_id is None:
                    self.root_id = run_id
            elif run.parent_run_id in self.runs:
                parent_run = self.runs[run.parent_run_id]
                number = parent_run.iterations[-1].number if parent_run.iterations else 0
                parent_run.current(number, t).children.append(run_id)
        number = int(event.get("iteration") or 0)
        if kind == "run_start":
            run.query = str(event.get("query") or "")
            run.context_type = event.get("context_type")
            run.context_chars = event.get("context_chars")
        elif kind == "iteration_start":
            run.current(number, t)
        elif kind == "model_reply":
            it = run.current(number, t)
            it.thought = str(event.get("thought") or "")
            it.model_seconds = event.get("seconds")
            it.usage = dict(event.get("usage") or {})
            it.n_code_blocks = int(event.get("n_code_blocks") or 0)
            it.has_final = bool(event.get("has_final"))
        elif kind == "code":
            block = run.current(number, t).blocks.setdefault(int(event.get("index") or 0), {})
            block.update(index=int(event.get("index") or 0), code=event.get("code", ""))
        elif kind == "observation":
            block = run.current(number, t).blocks.setdefault(int(event.get("index") or 0), {})
            block.update({k: event.get(k) for k in _OBSERVATION_KEYS})
        elif kind in ("subcall_start", "subcall_end"):
            call_id = str(event.get("call_id"))
            it = run.current(number, t)
            call = it.subcalls.setdefault(call_id, {"call_id": call_id, "t_start": t})
            for key in ("kind", "function", "prompt", "seconds", "answer", "error", "child_run_id"):
                if key in event:
                    call[key] = event[key]
            call["done"] = kind == "subcall_end"
        elif kind == "compaction":
            run.current(number, t).compaction = {
                k: event.get(k)
                for k in ("tokens_before", "tokens_after", "window_tokens", "summary", "seconds")
            }
        elif kind == "dead_end":
            run.current(number, t).dead_end = True
        elif kind == "final":
            run.answer = event.get("answer")
            run.stopped_reason = event.get("stopped_reason")
            run.n_iterations = event.get("iterations")
        elif kind == "run_end":
            run.usage = dict(event.get("usage") or {})
            run.seconds = event.get("seconds")
            run.ended = True

    @property
    def root(self) -> _TracedRun | None:
        """The root run, once its first event has arrived."""
        return self.runs.get(self.root_id) if self.root_id else None

    def tree(self) -> dict[str, Any] | None:
        """The whole recursion tree as JSON-ready data, or ``None`` before any event."""
        root = self.root
        if root is None:
            return None
        return root.to_json(self.runs)

    def orphans(self) -> list[dict[str, Any]]:
        """Runs whose parent never showed up (e.g. a partial stream); kept so nothing is lost."""
        return [
            r.to_json(self.runs)
            for r in self.runs.values()
            if r.parent_run_id is not None and r.parent_run_id not in self.runs
        ]


class Progress:
    """Receives every event; subclasses draw something. The base class draws nothing."""

    def __init__(self, builder: TraceBuilder) -> None:
        self.builder = builder

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def on_event(self, event: Mapping[str, Any]) -> None:
        """Called after ``event`` has been added to the builder."""

    def close(self) -> None:
        """Flush whatever is still on screen."""


RUN_ID_CHARS = 6
#: What a ``dead_end`` event's reason means, for the plain progress line.
DEAD_END_REASONS = {
    "found_nothing": "the search found nothing",
    "no_code": "neither code nor an answer",
}


class PlainProgress(Progress):
    """One plain line per step, indented by depth; for pipes, logs and CI."""

    def __init__(self, builder: TraceBuilder, stream: IO[str] | None = None) -> None:
        super().__init__(builder)
        self.stream = stream if stream is not None else sys.stderr

    def _line(self, event: Mapping[str, Any], text: str) -> None:
        depth = int(event.get("depth") or 0)
        # A short run id tells concurrent children at one depth apart.
        rid = safe_text(str(event.get("run_id") or "")[:RUN_ID_CHARS], keep_newlines=False)
        head = (
            f"[d{depth} {rid} #{int(event.get('iteration') or 0)} "
            f"{float(event.get('t') or 0):6.1f}s]"
        )
        # Model-written parts (thoughts, code, errors) must not drive the terminal.
        self.stream.write(f"{'  ' * depth}{head} {safe_text(text, keep_newlines=False)}\n")
        self.stream.flush()

    def on_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event")
        if kind == "run_start":
            chars = event.get("context_chars")
            self._line(
                event,
                f"run: {shorten(event.get('query'), 70)!r} "
                f"(context {event.get('context_type')}, {chars} chars)",
            )
        elif kind == "model_reply":
            self._line(
                event,
                f"thought: {shorten(event.get('thought'), 80)!r} "
                f"({tokens_of(event.get('usage'))} tok, {float(event.get('seconds') or 0):.1f}s)",
            )
        elif kind == "code":
            self._line(event, f"code: {shorten(event.get('code'), 80)}")
        elif kind == "observation":
            err = f", error: {shorten(event.get('error'), 60)}" if event.get("error") else ""
            self._line(event, f"output: {event.get('output_chars')} chars{err}")
        elif kind == "subcall_start":
            self._line(event, f"{_call_name(event)}: {shorten(event.get('prompt'), 70)!r}")
        elif kind == "subcall_end":
            err = f" error: {shorten(event.get('error'), 60)}" if event.get("error") else ""
            self._line(
                event,
                f"{_call_name(event)} done ({float(event.get('seconds') or 0):.1f}s)"
                f"{err} → {shorten(event.get('answer'), 50)!r}",
            )
        elif kind == "compaction":
            self._line(
                event,
                f"compaction: history {event.get('tokens_before')} → "
                f"{event.get('tokens_after')} tok (window {event.get('window_tokens')})",
            )
        elif kind == "dead_end":
            self._line(
                event,
                f"dead end: {DEAD_END_REASONS.get(str(event.get('reason')), 'unusable reply')}; "
                f"asked again without it in view ({event.get('retries_left')} retries left)",
            )
        elif kind == "final":
            self._line(
                event,
                f"final ({event.get('stopped_reason')}, {event.get('iterations')} iterations): "
                f"{shorten(event.get('answer'), 70)!r}"
                + (f" error: {shorten(event.get('error'), 120)}" if event.get("error") else ""),
            )
        elif kind == "run_end":
            self._line(
                event,
                f"run end: {tokens_of(event.get('usage'))} tok, "
                f"{float(event.get('seconds') or 0):.1f}s",
            )


class LiveTree(Progress):
    """A rich tree redrawn in place: runs → iterations → sub-calls, for a terminal.

    While running, each run shows only its latest iterations so the tree fits on screen (rich
    crops what does not fit, and the bottom is where the news is); the full tree is printed
    once at the end.
    """

    RECENT = 3

    def __init__(self, builder: TraceBuilder, console: Console | None = None) -> None:
        super().__init__(builder)
        # emoji=False: ":name:" in model text stays text.
        self.console = console if console is not None else Console(stderr=True, emoji=False)
        self._t0: float | None = None  # monotonic time of the tree's t=0
        self._last: RenderableType = self.render(recent=self.RECENT)
        # transient: the cropped live view is replaced by one full render at the end. The view
        # is rebuilt at every refresh, so the clocks tick between events.
        self.live = Live(
            console=self.console,
            refresh_per_second=4,
            transient=True,
            vertical_overflow="crop",
            get_renderable=self._live_view,
        )
        self.live.start()

    def _live_view(self) -> RenderableType:
        now = None if self._t0 is None else time.monotonic() - self._t0
        try:
            self._last = self.render(recent=self.RECENT, now=now)
        except RuntimeError:  # the builder changed while the refresh thread read it
            pass
        return self._last

    def on_event(self, event: Mapping[str, Any]) -> None:
        if self._t0 is None:
            self._t0 = time.monotonic() - float(event.get("t") or 0.0)
        self.live.refresh()

    def close(self) -> None:
        if self.live.is_started:
            self.live.stop()
            self.console.print(self.render())

    def render(self, recent: int | None = None, now: float | None = None) -> RenderableType:
        """The tree as a rich renderable; ``recent`` keeps only each run's last iterations;
        ``now`` (seconds on the events' clock) adds running clocks and what is awaited."""
        self._now = now
        root = self.builder.root
        if root is None:
            return Group("[dim]starting…[/dim]")
        tree = Tree(self._run_label(root), guide_style="dim")
        self._add_run(tree, root, recent)
        return tree

    _now: float | None = None

    def _run_label(self, run: _TracedRun) -> str:
        status = "✓" if run.ended else "…"
        tail = ""
        if run.ended:
            tail = f" [dim]{tokens_of(run.usage)} tok, {float(run.seconds or 0):.1f}s[/dim]"
        elif self._now is not None:
            tail = f" [dim]{max(0.0, self._now - run.t):.1f}s[/dim]"
        ctx = f" [dim]({run.context_type}, {run.context_chars} chars)[/dim]"
        query = markup_safe(shorten(run.query, 60))
        return f"[bold]{status} d{run.depth}[/bold] {query}{ctx}{tail}"

    def _add_run(self, node: Tree, run: _TracedRun, recent: int | None = None) -> None:
        shown = run.iterations
        if recent is not None and len(shown) > recent:
            node.add(f"[dim]… {len(shown) - recent} earlier iteration(s)[/dim]")
            shown = shown[-recent:]
        for it in shown:
            branch = node.add(self._iteration_label(it))
            if self._now is not None and not run.ended and _awaiting_model(it):
                waited = max(0.0, self._now - it.t)
                branch.add(f"[yellow]waiting for the model… {waited:.1f}s[/yellow]")
            for call in it.subcalls.values():
                # rlm calls that spawned a child run are drawn as that run, not twice.
                if call.get("kind") == "rlm" and (call.get("child_run_id") or not call.get("done")):
                    continue
                mark = "✓" if call.get("done") else "…"
                err = " [red]error[/red]" if call.get("error") else ""
                secs = f" {float(call.get('seconds') or 0):.1f}s" if call.get("done") else ""
                prompt = safe_quoted(shorten(call.get("prompt"), 40))
                branch.add(f"{mark} {markup_safe(_call_name(call))} {prompt}[dim]{secs}[/dim]{err}")
            for child_id in it.children:
                child = self.builder.runs.get(child_id)
                if child is not None:
                    self._add_run(branch.add(self._run_label(child)), child, recent)
        if run.answer is not None:
            node.add(
                f"[green]answer[/green] {safe_quoted(shorten(run.answer, 70))} "
                f"[dim]({run.stopped_reason})[/dim]"
            )

    def _iteration_label(self, it: _TracedIteration) -> str:
        parts = [f"#{it.number}"]
        if it.compaction:
            c = it.compaction
            parts.append(
                f"[magenta]compacted {c.get('tokens_before')}→{c.get('tokens_after')} tok[/magenta]"
            )
        if it.thought:
            parts.append(markup_safe(shorten(it.thought, 40)))
        if it.blocks:
            first = it.blocks[min(it.blocks)].get("code", "")
            parts.append(f"[cyan]{markup_safe(shorten(first, 40))}[/cyan]")
            done = [b for b in it.blocks.values() if "output_chars" in b]
            if done:
                parts.append(f"→ {it.output_chars()} chars")
            if it.errors():
                parts.append(f"[red]{it.errors()} error(s)[/red]")
        if it.dead_end:
            parts.append("[yellow]dead end, asked again[/yellow]")
        if it.has_final and not it.blocks:
            parts.append("[green]final answer[/green]")
        if it.usage:
            parts.append(f"[dim]{tokens_of(it.usage)} tok[/dim]")
        busy = float(it.model_seconds or 0) + sum(
            float(b.get("seconds") or 0) for b in it.blocks.values()
        )
        parts.append(f"[dim]{busy:.1f}s @{it.t:.1f}s[/dim]")
        return " ".join(parts)


def _awaiting_model(it: _TracedIteration) -> bool:
    """Whether the iteration's model call is in flight (started, no reply yet)."""
    return it.model_seconds is None and not it.thought and not it.blocks and not it.has_final


def choose_progress(builder: TraceBuilder, *, quiet: bool = False) -> Progress:
    """Nothing when ``quiet``; the live tree on a terminal; else plain lines on stderr.

    The live tree needs both streams on a terminal: it draws on stderr, and when stdout is piped
    the caller's output is being captured, so plain lines suit the log it is going to.
    """
    if quiet:
        return Progress(builder)
    if sys.stdout.isatty() and sys.stderr.isatty():
        return LiveTree(builder)
    return PlainProgress(builder, sys.stderr)


def stream_with_progress(
    graph: Any,
    payload: Mapping[str, Any] | Any,
    builder: TraceBuilder,
    progress: Progress,
    *,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    latest: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run ``graph`` on ``payload``, feeding custom events of every depth to ``builder``,
    ``progress`` and ``on_event``; return the root run's final values (``{}`` if none).

    ``latest``, when given, is kept updated with the root's latest values, so a caller still
    has the partial state (e.g. ``best_answer``) when the run fails. ``kwargs`` go to
    ``graph.stream`` (e.g. ``config`` or ``context``).
    """
    result: dict[str, Any] = {}
    for namespace, mode, chunk in graph.stream(
        dict(payload) if isinstance(payload, Mapping) else payload,
        stream_mode=["custom", "values"],
        subgraphs=True,
        **kwargs,
    ):
        if mode == "custom" and isinstance(chunk, dict):
            builder.add(chunk)
            progress.on_event(chunk)
            if on_event is not None:
                on_event(chunk)
        elif mode == "values" and not namespace and isinstance(chunk, dict):
            result = chunk
            if latest is not None:
                latest.clear()
                latest.update(chunk)
    return result
