"""Host memory and time to load a store-backed payload into a sandbox: streamed part by part
(what runs do) against read whole first (the value, as before parts existed).

    uv run python benchmarks/bench_payload_stream.py [--mb 100] [--db PATH]

Prints the put time, and per way the peak of Python allocations on the host (``tracemalloc``)
and the seconds to start the sandbox and run one block. A real SQLite store and sandbox.
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import tempfile
import time
import tracemalloc
from pathlib import Path

from langgraph.store.sqlite import SqliteStore

from rlm_graph.payload_store import Payloads
from rlm_graph.sandbox import Sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="payload size in MiB (ASCII text)")
    parser.add_argument("--db", help="SQLite file for the store (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db or Path(tmp) / "store.db")
        store = SqliteStore(sqlite3.connect(db, check_same_thread=False, isolation_level=None))
        store.setup()
        payloads = Payloads(lambda: store)
        value = "x" * (args.mb << 20)
        began = time.perf_counter()
        ref = payloads.put(value)
        print(f"put {args.mb} MiB: {time.perf_counter() - began:.2f} s")
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
            assert out == str(args.mb << 20), out
            print(f"{name}: host peak {peak:.1f} MiB, {seconds:.2f} s to load and run a block")


if __name__ == "__main__":
    main()
