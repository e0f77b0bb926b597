"""``rlm-graph threads``: list the CLI's threads, delete some (``--delete ID ...``) or those
idle for a while (``--prune --older-than 30d``), each with every payload no remaining thread
holds (:mod:`rlm_graph.payload_gc`); the database file is then compacted (``VACUUM``)."""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from rlm_graph.launch import SetupError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``rlm-graph threads``."""
    p.add_argument(
        "--delete",
        nargs="+",
        metavar="ID",
        help="delete these threads: their checkpoints and every payload (input file, "
        "children's chunks) no other thread holds; then compact the database",
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="delete every thread idle (no checkpoint) for longer than --older-than",
    )
    p.add_argument("--older-than", metavar="AGE", type=parse_age,
                   help="with --prune: an age such as 30d, 12h, 45m, 2w")  # fmt: skip


def parse_age(text: str) -> float:
    """``30d`` → seconds (units s, m, h, d, w)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not an age: {text!r} (try 30d, 12h, 45m or 2w)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def threads_command(args: argparse.Namespace) -> int:
    """``rlm-graph threads [--delete ID ... | --prune --older-than AGE]``."""
    from rlm_graph import build_graph
    from rlm_graph.threads import ThreadBook

    if args.older_than is not None and not args.prune:
        raise SetupError("--older-than goes with --prune")
    if args.prune and args.older_than is None:
        raise SetupError("--prune needs --older-than AGE (e.g. 30d)")
    if args.prune and args.delete:
        raise SetupError("give --delete or --prune, not both")
    try:
        book = ThreadBook()
    except OSError as exc:
        raise SetupError(str(exc)) from exc
    reader = build_graph(checkpointer=book.checkpointer())  # reads state; models never resolved
    if args.delete:
        return _delete(book, reader, args.delete)
    if args.prune:
        return _prune(book, reader, args.older_than)
    return _list(book, reader)


def _list(book: Any, reader: Any) -> int:
    from rlm_graph.threads import format_threads, status_of

    rows = [{**status_of(reader, i.thread_id), "created": i.created, "query": i.query}
            for i in book.all()]  # fmt: skip
    print(format_threads(rows))
    return 0


def _delete(book: Any, reader: Any, ids: list[str]) -> int:
    from rlm_graph.payload_gc import delete_threads

    ids = list(dict.fromkeys(ids))
    for thread in ids:  # all checked first: a typo deletes nothing
        config = {"configurable": {"thread_id": thread}}
        if book.get(thread) is None and reader.checkpointer.get_tuple(config) is None:
            raise SetupError(f"unknown thread {thread!r}; list them with `rlm-graph threads`")
    before = book.size()
    gone = delete_threads(reader, ids)
    book.forget(ids)  # last: an interrupted delete can be run again
    print(f"deleted {_threads(ids)}; {_payloads(gone)}; {_compacted(book, before)}")
    return 0


def _prune(book: Any, reader: Any, older_than: float) -> int:
    from rlm_graph.payload_gc import prune_threads

    before = book.size()
    cutoff = time.time() - older_than
    gone = prune_threads(reader, older_than)
    # Threads recorded by the CLI that never reached a checkpoint (killed at once).
    unstarted = [i.thread_id for i in book.all() if i.created < cutoff
                 and reader.checkpointer.get_tuple({"configurable": {"thread_id": i.thread_id}})
                 is None]  # fmt: skip
    ids = list(dict.fromkeys(gone.threads + unstarted))
    book.forget(ids)
    if not ids and not gone.payloads:
        print(f"no thread idle for longer than {_age(older_than)}")
        return 0
    print(f"deleted {_threads(ids)} idle for longer than {_age(older_than)}; "
          f"{_payloads(gone)}; {_compacted(book, before)}")  # fmt: skip
    return 0


def _threads(ids: list[str]) -> str:
    shown = ", ".join(ids[:10]) + (f", … ({len(ids) - 10} more)" if len(ids) > 10 else "")
    return f"{len(ids)} thread{'s' if len(ids) != 1 else ''} ({shown})"


def _payloads(gone: Any) -> str:
    if not gone.payloads:
        return "no payload freed (none, or still held by other threads)"
    n = len(gone.payloads)
    return f"{n} payload{'s' if n != 1 else ''} no other thread holds ({gone.chars:,} chars)"


def _compacted(book: Any, before: int) -> str:
    busy = book.vacuum()
    if busy is not None:
        return (f"{book.path} not compacted now ({busy}: a run is using it); "
                "its free space is reused by later runs")  # fmt: skip
    return f"{book.path.name}: {_size(before)}B → {_size(book.size())}B"


def _size(n: float) -> str:
    for unit in ("", "k", "M", "G"):
        if n < 1000 or unit == "G":
            return f"{n:.0f} {unit}" if unit == "" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _age(seconds: float) -> str:
    for unit in ("w", "d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]:.0f}{unit}"
    return f"{seconds:.0f}s"
