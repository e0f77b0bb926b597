"""``rlm-graph demo``: a long synthetic server log with a known answer, solved by the RLM.

The log (~500k characters by default, far beyond a small model's window) is generated from a
seed, so the expected answer is known exactly. The question asks for a count that a short loop
over ``context`` answers, which is what an RLM with even a 1.5B model can do and what the bare
model, seeing only what fits in its window, cannot.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rlm_graph import _exit

__all__ = ["DemoTask", "answer_matches", "main", "make_task"]

SERVICES = ("auth", "payment", "search", "inventory", "shipping", "email")
LEVELS = ("INFO", "INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "ERROR")
_MESSAGES = {
    "INFO": (
        "request handled in {ms} ms",
        "user {uid} session refreshed",
        "cache warmed: {n} keys",
    ),
    "DEBUG": ("retry budget {n} left", "queue depth {n}", "heartbeat from worker-{n}"),
    "WARN": ("slow response: {ms} ms", "connection pool at {n}% capacity", "deprecated field used"),
    "ERROR": (
        "timeout after {ms} ms talking to upstream",
        "request {uid} failed with status 500",
        "could not acquire lock (attempt {n})",
    ),
}
# The question states the line format, as a user asking about their own log would. An earlier
# wording, "(level ERROR, service [payment])", led the 1.5B model to search for the literal text
# "service [payment]"; a bare "ERROR lines from the payment service" led it to count all ERROR
# lines.
QUESTION = (
    "How many lines of this server log have level ERROR and service payment? Each line reads "
    "'<timestamp> <LEVEL> [<service>] <message>'. Count them with Python over `context`."
)


@dataclass(frozen=True)
class DemoTask:
    """One generated instance: the log, the question and the exact expected answer."""

    seed: int
    context: str
    question: str
    expected: str


def make_task(seed: int = 7, chars: int = 500_000) -> DemoTask:
    """Generate a server log of about ``chars`` characters and its question.

    Each line is ``<timestamp> <LEVEL> [<service>] <message>``; service names and levels occur
    only in their own columns, so the count is unambiguous.
    """
    rng = random.Random(seed)
    lines: list[str] = []
    size = 0
    t = 1_767_225_600 + rng.randrange(86_400)  # some time on 2026-01-01
    expected = 0
    while size < chars:
        t += rng.randrange(1, 4)
        level = rng.choice(LEVELS)
        service = rng.choice(SERVICES)
        msg = rng.choice(_MESSAGES[level]).format(
            ms=rng.randrange(5, 30_000), uid=rng.randrange(1000, 99_999), n=rng.randrange(1, 100)
        )
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        line = f"{stamp} {level:<5} [{service}] {msg}"
        lines.append(line)
        size += len(line) + 1
        expected += level == "ERROR" and service == "payment"
    return DemoTask(seed, "\n".join(lines) + "\n", QUESTION, str(expected))


def answer_matches(answer: str, expected: str) -> bool:
    """Whether ``answer`` states the expected integer (as a standalone number, commas allowed)."""
    numbers = {n.replace(",", "") for n in re.findall(r"(?<![\w.])\d[\d,]*(?![\w.]\d)", answer)}
    return expected in numbers


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rlm-graph demo",
        description="Run the RLM on a generated server log with a known answer (offline with "
        "the local model: no API key needed).",
    )
    p.add_argument("--seed", type=int, default=7, help="seed of the generated log (default 7)")
    p.add_argument(
        "--chars", type=int, default=500_000, help="size of the log in characters (default 500000)"
    )
    p.add_argument(
        "--model",
        default=None,
        help="model spec or package.module:attribute (default: $RLM_MODEL, Groq if "
        "GROQ_API_KEY is set, else the local model)",
    )
    p.add_argument(
        "--max-iterations", type=int, default=8, help="RLM iterations at the root (default 8)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 when the run completed (whatever the answer), 2 usage error, 1 failure."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.chars < 1000 or args.max_iterations < 1:
        print(
            "rlm-graph demo: error: --chars must be >= 1000, --max-iterations >= 1", file=sys.stderr
        )
        return 2
    from rlm_graph.launch import SetupError, choose_models, load_dotenv

    load_dotenv()
    try:
        models = choose_models(args.model, None)
    except SetupError as exc:
        print(f"rlm-graph demo: error: {exc}", file=sys.stderr)
        return 2
    spec = models.spec

    task = make_task(args.seed, args.chars)
    n_lines = task.context.count("\n")
    _say(
        f"Input: a generated server log, {len(task.context):,} chars ({n_lines:,} lines, seed "
        f"{task.seed}) — the model never sees it whole; it lives in the REPL as `context`."
    )
    _say(f"Question: {task.question}")
    _say(f"Model: {spec}")

    from rlm_graph import build_graph
    from rlm_graph.launch import is_local, prepare_local, run_with_progress

    started = time.monotonic()
    try:
        with _exit.interrupt_stops_work():
            if is_local(spec):
                prepare_local(spec, _say)
            # max_output_chars is left to the graph: the local model is tagged small, so it
            # gets 2,000-char observations (an 8k-token window cannot hold 20k chars next to
            # the prompt).
            graph = build_graph(
                model=models.model, sub_model=models.sub_model, max_iterations=args.max_iterations
            )
            payload = {"query": task.question, "context": task.context}
            result = run_with_progress(graph, payload, quiet=args.quiet)
    except KeyboardInterrupt:
        print("rlm-graph demo: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"rlm-graph demo: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started

    from rlm_graph.terminal import safe_text

    answer = str(result.get("answer", "")).strip()
    usage = result.get("usage") or {}
    ok = answer_matches(answer, task.expected)
    print(f"Answer:   {safe_text(answer)}")  # the model wrote it: no terminal sequences
    print(f"Expected: {task.expected}")
    print(f"Match:    {'yes' if ok else 'NO — the model answered wrongly (the run itself worked)'}")
    print(
        f"Run: {result.get('iterations', '?')} iterations, stopped: "
        f"{result.get('stopped_reason', '?')}, {usage.get('llm_calls', '?')} model calls, "
        f"{usage.get('total_tokens', '?')} tokens, {seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
