"""``rlm-graph --approve``: show the code a run is about to execute and ask y / n / e.

The answer becomes the resume value of the run's approval interrupt
(:mod:`rlm_graph.approval`): ``y`` approves, ``n`` rejects (asking for a reason the model will
read), ``e`` opens the code in ``$EDITOR`` (``$VISUAL``, else ``vi``) and runs what is saved.
End of input rejects.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from typing import IO, Any


def pending_review(graph: Any, config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The approval request the thread is waiting on, if any."""
    if config is None:
        return None
    snap = graph.get_state(config, subgraphs=True)
    todo = list(snap.tasks)
    while todo:
        task = todo.pop(0)
        for item in task.interrupts:
            value = getattr(item, "value", None)
            if isinstance(value, dict) and value.get("kind") == "approve_code":
                return value
        if task.state is not None and hasattr(task.state, "tasks"):
            todo.extend(task.state.tasks)
    return None


def ask(request: dict[str, Any], stdin: IO[str], stderr: IO[str]) -> dict[str, Any]:
    """Show the code and read the decision."""
    where = f"depth {request['depth']}, iteration {request['iteration']}"
    print(f"\n--- code to run ({where}; query: {request['query'][:80]!r}) ---", file=stderr)
    print(request["code"], file=stderr)
    print("---", file=stderr)
    while True:
        print("Run it? [y]es / [n]o / [e]dit: ", end="", file=stderr, flush=True)
        line = stdin.readline()
        if not line:
            return {"action": "reject", "message": "no reviewer answered (input closed)"}
        choice = line.strip().lower()[:1]
        if choice == "y":
            return {"action": "approve"}
        if choice == "n":
            print("Why not? (the model reads this): ", end="", file=stderr, flush=True)
            reason = stdin.readline().strip() or "rejected by the reviewer"
            return {"action": "reject", "message": reason}
        if choice == "e":
            return {"action": "edit", "code": edit(request["code"])}


def edit(code: str) -> str:
    """Let the user edit ``code`` in their editor; the saved text (unchanged if empty)."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
        path = f.name
    try:
        subprocess.run([*shlex.split(editor), path], check=False)
        with open(path, encoding="utf-8") as f:
            edited = f.read()
    finally:
        os.unlink(path)
    return edited if edited.strip() else code
