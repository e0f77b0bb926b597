"""Host memory and time of a store-backed payload, two ways each, in one process:

1. loading it into a sandbox: streamed part by part (what runs do) against read whole first
   (the value, as before parts existed);
2. a run's start on a ``context_file`` (start, then one block that prints ``len(context)``):
   streamed into the store in slices (what runs do now) against read whole first (before:
   ``Path.read_text``, then the value stored and described).

    uv run python benchmarks/bench_payload_stream.py [--mb 100] [--rounds 3] [--db PATH]

Prints, per way, the peak of Python allocations on the host (``tracemalloc``, a run of its
own) and the seconds (a run without ``tracemalloc``: it slows allocation-heavy code); the
start case alternates the ways for ``--rounds`` rounds and prints medians. A real SQLite
store, graph and ``process`` sandbox; the model is scripted.
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes: the scripted model

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.sqlite import SqliteStore

from rlm_graph import build_graph, close_runs
from rlm_graph.describe import info_of
from rlm_graph.payload_store import Given, Payloads
from rlm_graph.sandbox import Sandbox
from tests.fakes import FakeChatModel, code, final, turn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="payload size in MiB (ASCII text)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the start case")
    parser.add_argument("--db", help="SQLite file for the store (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        load_case(args.mb, Path(args.db or Path(tmp) / "store.db"))
        start_case(args.mb, args.rounds, Path(tmp))


def load_case(mb: int, db: Path) -> None:
    store = SqliteStore(sqlite3.connect(db, check_same_thread=False, isolation_level=None))
    store.setup()
    payloads = Payloads(lambda: store)
    value = "x" * (mb << 20)
    began = time.perf_counter()
    ref = payloads.put(value)
    print(f"put {mb} MiB: {time.perf_counter() - began:.2f} s")
    del value
    gc.collect()
    for name, load in (("streamed", payloads.source), ("read whole", payloads.get)):
        tracemalloc.start()
        began = time.perf_counter()
        with Sandbox(load(ref), "q") as sandbox:
            out = sandbox.run("print(len(context))").output.strip()
        seconds = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        assert out == str(mb << 20), out
        print(f"{name}: host peak {peak:.1f} MiB, {seconds:.2f} s to load and run a block")


def _read_whole(self: Payloads, path: str, errors: str = "replace") -> Given:
    """How start read a context_file before it was streamed: the whole text, then stored."""
    value = Path(path).read_text(encoding="utf-8", errors="replace")
    return Given(self.put(value), info_of(value), lambda: value)


@contextmanager
def _way(name: str) -> Iterator[None]:
    if name == "now":
        yield
        return
    streamed = Payloads.put_file
    Payloads.put_file = _read_whole  # type: ignore[method-assign]
    try:
        yield
    finally:
        Payloads.put_file = streamed  # type: ignore[method-assign]


def _run_once(path: Path, db: Path) -> str:
    """A graph run on a fresh database: start, one block, the answer."""

    def respond(messages: list[Any]) -> str:
        return code("print(len(context))") if turn(messages) == 0 else final("done")

    saver = SqliteSaver(sqlite3.connect(db, check_same_thread=False))
    graph = build_graph(model=FakeChatModel(respond=respond), checkpointer=saver)
    try:
        out = graph.invoke({"query": "How long?", "context_file": str(path)},
                           {"configurable": {"thread_id": "bench"}})  # fmt: skip
        return str(out["answer"])
    finally:
        close_runs(graph)


def _measure(run: Callable[[], str], traced: bool) -> float:
    gc.collect()
    if not traced:
        began = time.perf_counter()
        assert run() == "done"
        return time.perf_counter() - began
    tracemalloc.start()
    try:
        assert run() == "done"
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def start_case(mb: int, rounds: int, tmp: Path) -> None:
    path = tmp / "input.txt"
    line = b"some line of ordinary log text, 0123456789\n"
    with path.open("wb") as f:
        block = line * ((1 << 20) // len(line))
        while f.tell() + len(block) <= mb << 20:
            f.write(block)
        f.write(block[: (mb << 20) - f.tell()])
    _run_once(path, tmp / "warm.db")  # imports, the sandbox template, the page cache
    got: dict[str, dict[str, list[float]]] = {}
    for i in range(rounds):
        for name in ("before", "now") if i % 2 == 0 else ("now", "before"):
            for traced in (False, True):
                db = tmp / f"{name}-{i}-{traced}.db"
                with _way(name):
                    value = _measure(lambda db=db: _run_once(path, db), traced)
                got.setdefault(name, {}).setdefault("peak" if traced else "s", []).append(value)
                db.unlink()
    print(f"start + one block on a {mb} MiB context_file, medians of {rounds}:")
    for name in ("before", "now"):
        peak, seconds = (statistics.median(got[name][k]) for k in ("peak", "s"))
        print(f"{name}: host peak {peak:.1f} MiB, {seconds:.2f} s")
    b, n = got["before"], got["now"]
    print(
        f"now / before: peak {statistics.median(n['peak']) / statistics.median(b['peak']):.3f}, "
        f"time {statistics.median(n['s']) / statistics.median(b['s']):.2f}"
    )


if __name__ == "__main__":
    main()
