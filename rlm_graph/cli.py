"""The ``rlm-graph`` command: run a Recursive Language Model on a query and a long input.

One flag per setting of :class:`rlm_graph.context.Context`, derived from the schema so the two
cannot drift. Exit codes: 0 answered, 2 bad usage or input (checked before any model call),
1 the run failed (a model call that failed for good still prints the best answer known).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

from rlm_graph import _exit
from rlm_graph.launch import SetupError, choose_models, load_dotenv, run_with_progress

__all__ = ["UsageError", "main"]

PROG = "rlm-graph"
UsageError = SetupError

# Flags whose wording is better than the schema's (the model specs take the CLI's default order).
_MODEL_HELP = {
    "model": "root model: provider/model (groq/..., openai/..., ollama/..., gemini/..., local) "
    "or package.module:attribute (a BaseChatModel or zero-argument factory). "
    "Default: $RLM_MODEL, Groq if GROQ_API_KEY is set, else the local model if installed",
    "sub_model": "model for llm_query sub-calls (default: $RLM_SUB_MODEL, else the root model)",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (its default prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def flag_of(setting: str) -> str:
    """The CLI flag of a Context setting: ``max_depth`` → ``--max-depth``."""
    return "--" + setting.replace("_", "-")


def _without_none(hint: Any) -> Any:
    """``int`` for ``int | None``; other hints unchanged."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _add_setting_flags(p: argparse.ArgumentParser) -> None:
    """One flag per Context field. Unset flags stay None so the schema's defaults apply."""
    from rlm_graph.context import setting_fields

    for f, hint in setting_fields():
        base = _without_none(hint)
        kwargs: dict[str, Any] = {"dest": f.name, "default": None}
        if typing.get_origin(base) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(base))
        elif base in (int, float):
            kwargs.update(type=base, metavar="N" if base is int else "SECONDS")
        else:
            kwargs["metavar"] = "SPEC"
        described = str(f.metadata.get("description", ""))
        default = "" if f.default is None else f" (default {f.default})"
        kwargs["help"] = _MODEL_HELP.get(f.name, described + default).replace("%", "%%")
        p.add_argument(flag_of(f.name), **kwargs)


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description=(
            "Answer QUERY with a Recursive Language Model: the input lives in a sandboxed "
            "Python REPL as `context`, the model writes code to inspect it and can recurse "
            "with rlm_query. Subcommands: `rlm-graph demo --help`, `rlm-graph view --help`, "
            "`rlm-graph resume ID`, `rlm-graph threads --help` (list, --delete, --prune)."
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
        "--decode-errors",
        choices=["strict", "replace"],
        default="strict",
        help="a context that is not UTF-8 text (or holds NUL bytes) is an error (strict, the "
        "default); 'replace' reads it anyway with U+FFFD for bad bytes",
    )
    _add_setting_flags(p)
    _add_output_flags(p)
    p.add_argument(
        "--thread",
        metavar="ID",
        help="thread id to run under (default: a new one, printed to stderr); the run is "
        "checkpointed in $XDG_STATE_HOME/rlm-graph, so `rlm-graph resume ID` continues it",
    )
    p.add_argument(
        "--no-checkpoint", action="store_true", help="keep no checkpoints (cannot be resumed)"
    )
    p.add_argument(
        "--version",
        action=_Version,
        nargs=0,
        help="print the version and which bubblewrap strict mode would run, then exit",
    )
    return p


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    """The flags a run and a resume share."""
    p.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    p.add_argument(
        "--trace",
        metavar="FILE",
        help="write the trajectory: FILE.jsonl streams events as they happen; FILE.json adds a "
        "summary (run tree + events) at the end; FILE.html writes the viewer page",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")


class _Version(argparse.Action):
    """``--version``: this package's version, and the bubblewrap strict mode would use."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        from rlm_graph import __version__
        from rlm_graph.sandbox.bwrap import bwrap_info

        print(f"{PROG} {__version__}\nstrict sandbox: {bwrap_info()}")
        parser.exit()


def _err(message: str, stream: IO[str] | None = None) -> None:
    from rlm_graph.terminal import safe_text

    # Errors can quote model-written text (a provider's reply, a block's output).
    first = safe_text(" ".join(str(message).split()), keep_newlines=False) or "unknown error"
    print(f"{PROG}: error: {first}", file=stream if stream is not None else sys.stderr)


def _context_input(args: argparse.Namespace) -> dict[str, Any]:
    """The payload part of the input: stdin by value, a file by reference (``context_file``:
    the run reads and stores it, so neither checkpoints nor traces carry it). The file is
    checked here first (UTF-8, not binary, not empty) as ``--decode-errors`` says, one slice at
    a time (never held whole), and the run decodes it the same way (``decode_errors``)."""
    if args.context_file is None:
        return {}
    from rlm_graph.context_file import ContextFileError, check_context, read_context

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        if args.context_file == "-":
            return {"context": read_context("-", decode_errors=args.decode_errors, say=say)}
        check_context(args.context_file, decode_errors=args.decode_errors, say=say)
    except ContextFileError as exc:
        raise UsageError(str(exc)) from exc
    path = str(Path(args.context_file).resolve())
    return {"context_file": path, "decode_errors": args.decode_errors}


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, checked by the schema (flag named on error)."""
    from rlm_graph.context import CONTEXT_FIELDS, Context, SettingError

    given = {
        name: getattr(args, name)
        for name in CONTEXT_FIELDS
        if name not in ("model", "sub_model") and getattr(args, name) is not None
    }
    try:
        Context(**given)
    except SettingError as exc:
        raise UsageError(f"{flag_of(exc.setting)} {exc.problem}") from exc
    return given


def _check_args(args: argparse.Namespace) -> dict[str, Any]:
    if not args.query.strip():
        raise UsageError("QUERY is empty")
    settings = _settings(args)
    if args.trace:
        parent = Path(args.trace).resolve().parent
        if not parent.is_dir():
            raise UsageError(f"--trace directory does not exist: {parent}")
    if settings.get("sandbox") == "strict":
        from rlm_graph.sandbox import SandboxError
        from rlm_graph.sandbox.strict import check_available

        try:
            check_available()
        except SandboxError as exc:
            raise UsageError(str(exc)) from exc
    return settings


def _run(args: argparse.Namespace) -> int:
    settings = _check_args(args)
    payload: dict[str, Any] = {"query": args.query, **_context_input(args)}
    models = choose_models(args.model, args.sub_model)
    if args.no_checkpoint:
        # Approval needs a checkpointer to pause on: a memory one keeps nothing after exit.
        memory, config = _memory_saver(settings), _one_off_thread(settings)
        return _stream(args, _graph(models, settings, memory), models, settings, payload, config)
    from rlm_graph.threads import ThreadBook, ThreadInfo, new_thread_id

    book = _book(ThreadBook)
    thread = args.thread or new_thread_id()
    book.record(ThreadInfo(thread, time.time(), args.query, models.spec, models.sub_spec, settings))
    if not args.quiet:
        print(
            f"{PROG}: thread {thread} (continue it with: {PROG} resume {thread})", file=sys.stderr
        )
    graph = _graph(models, settings, book.checkpointer())
    config = {"configurable": {"thread_id": thread}}
    return _stream(args, graph, models, settings, payload, config)


def _memory_saver(settings: dict[str, Any]) -> Any:
    if not settings.get("approve"):
        return None
    from langgraph.checkpoint.memory import InMemorySaver

    return InMemorySaver()


def _one_off_thread(settings: dict[str, Any]) -> dict[str, Any] | None:
    return {"configurable": {"thread_id": "cli"}} if settings.get("approve") else None


def _book(cls: Any) -> Any:
    try:
        return cls()
    except OSError as exc:
        raise UsageError(str(exc)) from exc


def _threads_parser() -> argparse.ArgumentParser:
    from rlm_graph.cli_threads import add_arguments

    p = _Parser(
        prog=PROG, description="Resume, list or delete the runs kept in $XDG_STATE_HOME/rlm-graph."
    )
    sub = p.add_subparsers(dest="command", required=True)
    resume = sub.add_parser("resume", help="continue a stopped or paused thread")
    resume.add_argument("thread", metavar="ID", help="the thread id (see `rlm-graph threads`)")
    _add_output_flags(resume)
    threads = sub.add_parser(
        "threads",
        help="list the threads (id, status, started, query, answer), or delete some",
        description="List the threads: id, status, started, query, answer. --delete and "
        "--prune delete threads with every payload no remaining thread holds.",
    )
    add_arguments(threads)
    return p


def _resume(args: argparse.Namespace) -> int:
    """``rlm-graph resume ID``: the same graph (model, settings) continues the thread."""
    from rlm_graph.threads import ThreadBook, status_of

    book = _book(ThreadBook)
    info = book.get(args.thread)
    if info is None:
        raise UsageError(f"unknown thread {args.thread!r}; list them with `{PROG} threads`")
    models = choose_models(info.model, info.sub_model)
    graph = _graph(models, info.settings, book.checkpointer())
    status = status_of(graph, info.thread_id)
    config = {"configurable": {"thread_id": info.thread_id}}
    if status["status"] == "done":
        print(f"{PROG}: thread {info.thread_id} is done; its answer:", file=sys.stderr)
        print(status["answer"])
        return 0
    import shlex

    from rlm_graph.payload_store import PayloadMissing

    try:
        return _stream(args, graph, models, info.settings, None, config)
    except PayloadMissing:
        again = f"{PROG} {shlex.quote(info.query)} [--context-file PATH]"
        _err(
            f"thread {info.thread_id} cannot continue: its input is no longer stored (deleted "
            f"or expired); ask again: {again}, and delete this one: "
            f"{PROG} threads --delete {info.thread_id}"
        )
        return 1


def _graph(models: Any, settings: dict[str, Any], checkpointer: Any) -> Any:
    from rlm_graph import build_graph

    try:
        return build_graph(
            model=models.model, sub_model=models.sub_model, checkpointer=checkpointer, **settings
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _stream(
    args: argparse.Namespace,
    graph: Any,
    models: Any,
    settings: dict[str, Any],
    payload: dict[str, Any] | None,
    config: dict[str, Any] | None,
) -> int:
    """Run (``payload``) or resume (``None``) the graph with progress; print the answer."""
    from rlm_graph.inputs import InputError
    from rlm_graph.launch import local_specs, prepare_local, startup_status

    with startup_status(quiet=args.quiet) as (say, on_progress):
        # Start the local model now, with a status line, not silently in the first call.
        for spec in local_specs(models.spec, models.sub_spec):
            prepare_local(spec, say, on_progress)
    from rlm_graph.progress import TraceBuilder
    from rlm_graph.tracefile import TraceWriter

    meta = {
        "query": (payload or {}).get("query"),
        "model": models.spec,
        "sub_model": models.sub_spec,
        "settings": settings,
        "context_chars": _chars((payload or {}).get("context")),
    }
    builder = TraceBuilder()
    trace = TraceWriter(args.trace, meta) if args.trace else None
    latest: dict[str, Any] = {}
    result: dict[str, Any] = {}
    error: str | None = None
    started = time.monotonic()
    try:
        result = _run_reviewed(graph, payload, config, args, builder, trace, latest)
        if "answer" not in result:
            raise RuntimeError("the graph finished without an answer")
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        if args.json and not isinstance(exc, InputError):
            _print_json(_failure(error, latest, models.spec, started, len(builder.runs)))
        if isinstance(exc, InputError):
            raise UsageError(str(exc)) from exc
        raise
    finally:
        if trace is not None:
            trace.close(result or latest, error or result.get("error"))
    keys = ("answer", "usage", "iterations", "stopped_reason", "error")
    if args.json:
        out = {key: result.get(key) for key in keys}
        if result.get("stopped_reason") == "error":
            out["best_answer"] = result.get("best_answer")  # as in the JSON of a failed run
        out.update(model=models.spec, seconds=_since(started), runs=len(builder.runs))
        if config is not None:
            out["thread_id"] = config["configurable"]["thread_id"]
        _print_json(out)
    else:
        print(answer_for(sys.stdout, str(result["answer"])))
    if result.get("stopped_reason") == "error":
        # The answer above is the best one known; the model call that failed for good says why.
        _err(str(result.get("error")))
        return 1
    return 0


def _run_reviewed(
    graph: Any,
    payload: Any,
    config: dict[str, Any] | None,
    args: argparse.Namespace,
    builder: Any,
    trace: Any,
    latest: dict[str, Any],
) -> dict[str, Any]:
    """Run the graph; each time it pauses for approval (``--approve``), ask on the terminal
    and resume with the answer."""
    from langgraph.types import Command

    from rlm_graph.cli_review import ask, pending_review

    while True:
        result = run_with_progress(
            graph,
            payload,
            quiet=args.quiet,
            builder=builder,
            on_event=trace.event if trace else None,
            latest=latest,
            config=config,
        )
        request = pending_review(graph, config)
        if request is None:
            return result
        payload = Command(resume=ask(request, sys.stdin, sys.stderr))


def _chars(context: Any) -> int | None:
    return len(context) if isinstance(context, str) else None


def answer_for(stream: IO[str], answer: str) -> str:
    """The answer as printed on ``stream``: escaped control sequences on a terminal (the model
    wrote it), unchanged into a pipe or file; ``--json`` always keeps it raw."""
    from rlm_graph.terminal import safe_text

    return safe_text(answer) if stream.isatty() else answer


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _failure(
    error: str, latest: dict[str, Any], spec: str, started: float, runs: int
) -> dict[str, Any]:
    """``--json`` output of a failed run: the error and whatever was learned before it."""
    return {
        "error": error,
        "answer": latest.get("answer") or None,
        "best_answer": latest.get("best_answer"),
        "usage": latest.get("usage"),
        "iterations": latest.get("iterations"),
        "stopped_reason": latest.get("stopped_reason") or "error",
        "model": spec,
        "seconds": _since(started),
        "runs": runs,
    }


def _print_json(out: dict[str, Any]) -> None:
    print(json.dumps(out, ensure_ascii=False, default=str), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rlm-graph`` and ``python -m rlm_graph``; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "demo":
        from rlm_graph.demo import main as demo_main

        return int(demo_main(args_list[1:]) or 0)
    if args_list and args_list[0] == "view":
        from rlm_graph.viewer import main as view_main

        return int(view_main(args_list[1:]) or 0)
    debug = "--debug" in args_list
    try:
        load_dotenv()
        if args_list and args_list[0] in ("resume", "threads"):
            args = _threads_parser().parse_args(args_list)
            with _exit.interrupt_stops_work():
                if args.command == "resume":
                    return _resume(args)
                from rlm_graph.cli_threads import threads_command

                return threads_command(args)
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
