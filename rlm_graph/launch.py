"""What the ``rlm-graph`` command and its demo share: ``.env``, the model choice, the local
model's start-up, progress while the graph runs, and a Ctrl-C that stops work at once.

Errors the user can fix raise :class:`SetupError` (one line, exit code 2).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlm_graph import _exit


class SetupError(Exception):
    """Bad usage or input, found before any model call: reported on one line, exit code 2."""


def load_dotenv() -> None:
    """Load ``.env`` from the working directory; real environment variables win."""
    from dotenv import load_dotenv as _load

    env = Path.cwd() / ".env"
    if env.is_file():
        _load(env, override=False)


@dataclass(frozen=True)
class Models:
    """The chosen model specs and their resolved chat models."""

    spec: str
    sub_spec: str | None
    model: Any
    sub_model: Any


def choose_models(model: str | None, sub_model: str | None) -> Models:
    """Resolve the root model (``model``, else the default order: ``RLM_MODEL``, Groq with a
    key, the local model if installed) and the sub-model (``sub_model``, else
    ``RLM_SUB_MODEL``, else none: the root model serves), so bad providers and missing keys
    fail now, before any call."""
    from rlm_graph.models import ModelSpecError, default_model_spec

    try:
        spec = model or default_model_spec()
    except ModelSpecError as exc:
        raise SetupError(str(exc)) from exc
    sub_spec = sub_model or os.environ.get("RLM_SUB_MODEL") or None
    root = _resolve(spec, "root")
    return Models(spec, sub_spec, root, _resolve(sub_spec, "sub") if sub_spec else None)


def _resolve(spec: str, role: Literal["root", "sub"]) -> Any:
    if ":" in spec and str(Path.cwd()) not in sys.path:
        # As with `python -m`, let import-path specs name modules of the current project.
        sys.path.insert(0, str(Path.cwd()))
    from rlm_graph.models import ModelSpecError, resolve_model

    try:
        return resolve_model(spec, role=role)
    except ModelSpecError as exc:
        raise SetupError(str(exc)) from exc


def is_local(spec: str) -> bool:
    """Whether ``spec`` names the offline local model."""
    return spec == "local" or spec.startswith("local/")


def prepare_local(
    spec: str,
    say: Callable[[str], None],
    on_progress: Callable[[str, int, int], None] | None = None,
) -> None:
    """Join/verify the weights and start the server up front, saying so, instead of silently
    inside the first model call. ``on_progress(what, done, total)`` follows the bytes joined
    or verified."""
    from rlm_graph.local.server import LocalSettings, get_server
    from rlm_graph.local.weights import ensure_packaged_weights, packaged_weights_ready

    started = time.monotonic()
    if spec == "local":
        if not packaged_weights_ready():
            say("Joining and verifying the local model's 1.1 GB of weights (first run only)...")
        path = ensure_packaged_weights(on_progress=on_progress)
    else:
        path = Path(spec.removeprefix("local/")).expanduser().resolve()
    say("Starting the llama.cpp server on 127.0.0.1...")
    get_server(path, LocalSettings.from_env()).ensure_started()
    say(f"Local model ready in {time.monotonic() - started:.1f} s.")


def local_specs(*specs: str | None) -> list[str]:
    """The distinct local model specs among ``specs`` (root and sub-model), in order."""
    return list(dict.fromkeys(s for s in specs if s and is_local(s)))


@contextlib.contextmanager
def startup_status(*, quiet: bool) -> Iterator[tuple[Callable[[str], None], Any]]:
    """``(say, on_progress)`` for :func:`prepare_local`: on a terminal a status line with a
    spinner, a byte bar while weights are joined or verified, and the elapsed time; otherwise
    plain lines on stderr (nothing when ``quiet``)."""
    if quiet:
        yield (lambda _: None), None
        return
    if not sys.stderr.isatty():
        yield (lambda line: print(line, file=sys.stderr, flush=True)), None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("Preparing the local model", total=None)

    def say(line: str) -> None:
        bar.console.print(line, highlight=False, markup=False)
        bar.update(task, description=line.rstrip("."), total=None, completed=0)

    def on_progress(what: str, done: int, total: int) -> None:
        bar.update(
            task, description=f"{what.capitalize()} the weights", total=total, completed=done
        )

    with bar:
        yield say, on_progress


def run_with_progress(
    graph: Any,
    payload: dict[str, Any] | None,
    *,
    quiet: bool,
    builder: Any = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    latest: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Stream ``graph`` on ``payload`` (``None`` resumes the thread named in ``config``)
    with the live tree (or plain lines, or nothing) and return its output; ``on_event`` and
    ``latest`` as in :func:`rlm_graph.progress.stream_with_progress`. On Ctrl-C the graph's
    sandboxes and local servers stop first, so a node blocked on them fails at once, then
    ``KeyboardInterrupt`` goes on."""
    from rlm_graph.live_runs import close_runs
    from rlm_graph.progress import TraceBuilder, choose_progress, stream_with_progress

    builder = builder if builder is not None else TraceBuilder()
    _exit.on_abandon(functools.partial(close_runs, graph))
    with choose_progress(builder, quiet=quiet) as progress:
        result: dict[str, Any] = stream_with_progress(
            graph, payload, builder, progress, on_event=on_event, latest=latest, config=config
        )
    return result
