"""Command line: ``python -m benchmarks.longctx {list,gen,run,summarize}``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.longctx.families import FAMILIES, iter_tasks, make_task
from benchmarks.longctx.runner import done_keys, read_rows, run_suite, write_rows
from benchmarks.longctx.summary import markdown, plot
from benchmarks.longctx.systems import SYSTEMS, Settings
from benchmarks.longctx.tasks import SPLITS, format_size, parse_size

DEFAULT_SIZES = "8k,32k,128k,512k,2M,8M"


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def families_arg(text: str) -> list[str]:
    """``all`` or a comma list of known family names."""
    names = list(FAMILIES) if text.strip() == "all" else _csv(text)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown family {', '.join(unknown) or '(none)'}: choose from "
            f"{', '.join(FAMILIES)} or 'all'"
        )
    return names


def systems_arg(text: str) -> list[str]:
    """A comma list of :data:`SYSTEMS`."""
    names = _csv(text)
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown system {', '.join(unknown) or '(none)'}: choose from {', '.join(SYSTEMS)}"
        )
    return names


def sizes_arg(text: str) -> list[int]:
    """Comma list of sizes such as ``8k,128k,2M``."""
    try:
        return [parse_size(s) for s in _csv(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seeds_arg(text: str) -> list[int]:
    """Comma list of integers, ranges allowed (``0-4,100``)."""
    out: list[int] = []
    try:
        for part in _csv(text):
            lo, sep, hi = part.partition("-")
            out += list(range(int(lo), int(hi) + 1)) if sep else [int(part)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad seeds {text!r}: use e.g. 0,1,2 or 0-4") from None
    return out


#: Settings with a flag of their own here (the bare and rlms systems read them too).
_OWN_FLAGS = ("max_iterations", "max_seconds", "max_llm_calls", "max_depth", "exec_timeout",
              "strategy")  # fmt: skip


def rlm_setting_arg(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` for one setting of the RLM graph (:func:`rlm_graph.context.parse_setting`)
    that has no flag of its own here."""
    from rlm_graph.context import parse_setting

    try:
        name, value = parse_setting(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if name in _OWN_FLAGS:
        raise argparse.ArgumentTypeError(f"{name} has its own flag: --{name.replace('_', '-')}")
    return name, value


def parser() -> argparse.ArgumentParser:
    """The argument parser (sub-commands list, gen, run, summarize)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.longctx",
        description="Long-context suite: RULER/OOLONG-style and real-source tasks, run on the "
        "RLM graph, the bare model and the reference rlms.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="families, systems and the dev/test seeds")
    g = sub.add_parser("gen", help="generate one task: input to a file, question/gold as JSON")
    g.add_argument("--family", required=True, type=lambda t: families_arg(t)[0])
    g.add_argument("--size", required=True, type=parse_size)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", type=Path, help="write the input text here")
    r = sub.add_parser(
        "run",
        help="run systems on tasks, append JSONL rows",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    r.add_argument("--model", required=True, help="model spec: local, groq/..., openai/..., ...")
    r.add_argument("--systems", type=systems_arg, default="rlm,bare", help=",".join(SYSTEMS))
    r.add_argument("--families", type=families_arg, default="all", help="comma list, or all")
    r.add_argument("--sizes", type=sizes_arg, default=DEFAULT_SIZES, help="characters")
    r.add_argument("--split", choices=sorted(SPLITS), default="dev", help="declared seeds")
    r.add_argument("--seeds", type=seeds_arg, help="explicit seeds (overrides --split)")
    r.add_argument("--out", type=Path, required=True, help="JSONL file, appended")
    r.add_argument("--resume", action="store_true", help="skip (task, system) rows in --out")
    d = Settings()
    r.add_argument("--max-iterations", type=int, default=d.max_iterations, help="rlm and rlms")
    r.add_argument(
        "--max-seconds", type=float, default=d.max_seconds, help="per task, rlm and rlms"
    )
    r.add_argument("--max-llm-calls", type=int, default=d.max_llm_calls, help="rlm only")
    r.add_argument(
        "--max-depth",
        type=int,
        default=d.max_depth,
        help="recursion depth as the graph counts it (rlms is given one more: the same tree)",
    )
    r.add_argument("--exec-timeout", type=float, default=d.exec_timeout, help="rlm, per block")
    r.add_argument(
        "--window-tokens",
        type=int,
        default=d.window_tokens,
        help="the model's window: bare input cut and rlms' sub-call window",
    )
    r.add_argument(
        "--answer-tokens",
        type=int,
        default=d.answer_tokens,
        help="tokens kept free for the bare model's answer",
    )
    r.add_argument(
        "--strategy",
        choices=("auto", "rlm"),
        default=d.strategy,
        help="the rlm system's strategy: auto (direct when the input is small) or rlm forced",
    )
    r.add_argument(
        "--rlm-setting",
        type=rlm_setting_arg,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="one more setting of the rlm system (a field of rlm_graph.Context, e.g. "
        "dead_end_retries=2); repeat the flag for several; stored in each rlm row",
    )
    r.add_argument(
        "--keep-messages",
        action="store_true",
        help="store the RLM's root conversation in each row (extra.messages)",
    )
    s = sub.add_parser("summarize", help="Markdown table per family x size x system")
    s.add_argument("results", type=Path)
    s.add_argument("--split", choices=sorted(SPLITS), help="only rows of this split")
    s.add_argument("--plot", type=Path, help="also write a PNG: score vs size per system")
    return p


def cmd_list() -> int:
    """Print families, systems and splits."""
    print("families:", ", ".join(FAMILIES))
    print("systems:", ", ".join(SYSTEMS))
    for name, seeds in SPLITS.items():
        print(f"{name} seeds:", ", ".join(map(str, seeds)))
    print("default sizes:", DEFAULT_SIZES)
    return 0


def cmd_gen(args: argparse.Namespace) -> int:
    """Generate one task; print its question, gold and fingerprint."""
    task = make_task(args.family, args.size, args.seed)
    if args.out:
        args.out.write_text(task.context, encoding="utf-8")
    info = {
        "family": task.family, "size": format_size(task.size), "seed": task.seed,
        "split": task.split, "query": task.query, "gold": task.gold,
        "fingerprint": task.fingerprint, "context_chars": len(task.context), "meta": task.meta,
    }  # fmt: skip
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the suite, appending rows to ``--out``."""
    settings = Settings(
        max_iterations=args.max_iterations,
        max_seconds=args.max_seconds,
        max_llm_calls=args.max_llm_calls,
        max_depth=args.max_depth,
        exec_timeout=args.exec_timeout,
        window_tokens=args.window_tokens,
        answer_tokens=args.answer_tokens,
        keep_messages=args.keep_messages,
        strategy=args.strategy,
        rlm_extra=dict(args.rlm_setting),
    )
    seeds = args.seeds if args.seeds is not None else list(SPLITS[args.split])
    skip = done_keys(args.out) if args.resume else None
    tasks = iter_tasks(args.families, args.sizes, seeds)
    with args.out.open("a", encoding="utf-8") as out:
        n = write_rows(
            run_suite(tasks, args.systems, args.model, settings, skip=skip), out, echo=sys.stderr
        )
    print(f"wrote {n} rows to {args.out}", file=sys.stderr)
    return 0


def cmd_summarize(args: argparse.Namespace) -> int:
    """Print the Markdown summary; optionally write the plot."""
    if not args.results.exists():
        print(
            f"error: {args.results} does not exist: give a file written by `run --out`",
            file=sys.stderr,
        )
        return 2
    rows = read_rows(args.results)
    if args.split:
        rows = [r for r in rows if r["split"] == args.split]
    if not rows:
        print(f"error: no rows in {args.results} for that split", file=sys.stderr)
        return 2
    print(markdown(rows))
    if args.plot:
        plot(rows, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parser().parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "gen":
            return cmd_gen(args)
        if args.command == "run":
            return cmd_run(args)
        return cmd_summarize(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
