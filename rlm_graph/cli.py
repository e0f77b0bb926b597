"""The ``rlm-graph`` command: run a Recursive Language Model on a query and a long input.

Exit codes: 0 answered, 2 bad usage or input (checked before any model call), 1 the run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Literal, NoReturn

from rlm_graph import _exit
from rlm_graph.progress import TraceBuilder, choose_progress, stream_with_progress

__all__ = ["UsageError", "main"]

PROG = "rlm-graph"


class UsageError(Exception):
    """Bad usage or input: reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (its default prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description=(
            "Answer QUERY with a Recursive Language Model: the input lives in a sandboxed "
            "Python REPL as `context`, the model writes code to inspect it and can recurse "
            "with rlm_query. Subcommand: `rlm-graph demo --help`."
        ),
        epilog="Reads .env from the current directory. Exit codes: 0 answered, 2 bad usage or "
        "input (checked before any model call), 1 the run failed.",
    )
    p.add_argument("query", metavar="QUERY", help="the question to answer")
    p.add_argument(
        "--context-file",
        metavar="PATH",
        help="file whose text becomes `context` ('-' reads stdin); without it the query "
        "itself is the payload",
    )
    p.add_argument(
        "--model",
        metavar="SPEC",
        help="root model: provider/model (groq/..., openai/..., ollama/..., gemini/..., local) "
        "or package.module:attribute (a BaseChatModel or zero-argument factory). "
        "Default: $RLM_MODEL, Groq if GROQ_API_KEY is set, else the local model if installed",
    )
    p.add_argument(
        "--sub-model",
        metavar="SPEC",
        help="model for llm_query sub-calls (default: $RLM_SUB_MODEL, else the root model)",
    )
    p.add_argument("--max-depth", type=int, default=2, metavar="N", help="recursion depth (2)")
    p.add_argument(
        "--max-iterations", type=int, default=20, metavar="N", help="iterations per run (20)"
    )
    p.add_argument(
        "--sandbox",
        choices=["process", "strict"],
        default="process",
        help="process: isolated worker process; strict: also bubblewrap namespaces (Linux)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    p.add_argument("--trace", metavar="FILE", help="write the whole trajectory tree as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def _err(message: str, stream: IO[str] | None = None) -> None:
    first = " ".join(str(message).split()) or "unknown error"
    print(f"{PROG}: error: {first}", file=stream if stream is not None else sys.stderr)


def _load_dotenv() -> None:
    """Load ``.env`` from the working directory; real environment variables win."""
    from dotenv import load_dotenv

    env = Path.cwd() / ".env"
    if env.is_file():
        load_dotenv(env, override=False)


def _default_spec() -> str:
    """RLM_MODEL, Groq with a key, the local model if installed — or a one-line usage error."""
    from rlm_graph.models import ModelSpecError, default_model_spec

    try:
        return default_model_spec()
    except ModelSpecError as exc:
        raise UsageError(str(exc)) from exc


def _resolve(spec: str, role: Literal["root", "sub"]) -> Any:
    """Resolve a model spec now, so bad providers and missing keys fail before any call."""
    if ":" in spec and str(Path.cwd()) not in sys.path:
        # As with `python -m`, let import-path specs name modules of the current project.
        sys.path.insert(0, str(Path.cwd()))
    from rlm_graph.models import ModelSpecError, resolve_model

    try:
        return resolve_model(spec, role=role)
    except ModelSpecError as exc:
        raise UsageError(str(exc)) from exc


def _read_context(path: str | None) -> str | None:
    if path is None:
        return None
    if path == "-":
        return sys.stdin.read()
    p = Path(path)
    if not p.exists():
        raise UsageError(f"context file not found: {path}")
    if not p.is_file():
        raise UsageError(f"context file is not a regular file: {path}")
    try:
        return p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read context file {path}: {exc.strerror or exc}") from exc


def _check_args(args: argparse.Namespace) -> None:
    if not args.query.strip():
        raise UsageError("QUERY is empty")
    if args.max_depth < 0:
        raise UsageError("--max-depth must be >= 0")
    if args.max_iterations < 1:
        raise UsageError("--max-iterations must be >= 1")
    if args.trace:
        parent = Path(args.trace).resolve().parent
        if not parent.is_dir():
            raise UsageError(f"--trace directory does not exist: {parent}")
    if args.sandbox == "strict":
        from rlm_graph.sandbox import SandboxError
        from rlm_graph.sandbox.strict import check_available

        try:
            check_available()
        except SandboxError as exc:
            raise UsageError(str(exc)) from exc


def _write_trace(
    path: str,
    builder: TraceBuilder,
    meta: dict[str, Any],
    result: dict[str, Any],
    error: str | None,
) -> None:
    trace = {
        **meta,
        "answer": result.get("answer"),
        "usage": result.get("usage"),
        "iterations": result.get("iterations"),
        "stopped_reason": result.get("stopped_reason"),
        "error": error,
        "events": builder.n_events,
        "root": builder.tree(),
        "orphans": builder.orphans(),
    }
    Path(path).write_text(json.dumps(trace, indent=2, default=str) + "\n", encoding="utf-8")


def _run(args: argparse.Namespace) -> int:
    _check_args(args)
    context = _read_context(args.context_file)
    spec = args.model or _default_spec()
    sub_spec = args.sub_model or os.environ.get("RLM_SUB_MODEL") or None
    model = _resolve(spec, "root")
    sub_model = _resolve(sub_spec, "sub") if sub_spec else None

    from rlm_graph import build_graph
    from rlm_graph.prompts import InputError

    try:
        graph = build_graph(
            model=model,
            sub_model=sub_model,
            max_depth=args.max_depth,
            max_iterations=args.max_iterations,
            sandbox=args.sandbox,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc

    payload: dict[str, Any] = {"query": args.query}
    if context is not None:
        payload["context"] = context
    meta = {
        "query": args.query,
        "model": spec,
        "sub_model": sub_spec,
        "settings": {
            "max_depth": args.max_depth,
            "max_iterations": args.max_iterations,
            "sandbox": args.sandbox,
        },
        "context_chars": len(context) if context is not None else None,
    }
    builder = TraceBuilder()
    result: dict[str, Any] = {}
    error: str | None = None
    started = time.monotonic()
    try:
        with choose_progress(builder, quiet=args.quiet) as progress:
            result = stream_with_progress(graph, payload, builder, progress)
    except InputError as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise UsageError(str(exc)) from exc
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        meta["seconds"] = round(time.monotonic() - started, 3)
        if args.trace:
            _write_trace(args.trace, builder, meta, result, error)

    if "answer" not in result:
        raise RuntimeError("the graph finished without an answer")
    if args.json:
        out = {
            "answer": result.get("answer"),
            "usage": result.get("usage"),
            "iterations": result.get("iterations"),
            "stopped_reason": result.get("stopped_reason"),
            "model": spec,
            "seconds": meta["seconds"],
            "runs": len(builder.runs),
        }
        print(json.dumps(out, ensure_ascii=False, default=str))
    else:
        print(result["answer"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rlm-graph`` and ``python -m rlm_graph``; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "demo":
        from rlm_graph.demo import main as demo_main

        return int(demo_main(args_list[1:]) or 0)
    debug = "--debug" in args_list
    try:
        _load_dotenv()
        args = _build_parser().parse_args(args_list)
        with _exit.interrupt_stops_work():
            return _run(args)
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        _err(str(exc))
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        _err(f"{type(exc).__name__}: {exc}")
        return 1
