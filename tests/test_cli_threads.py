"""`rlm-graph threads --delete ID ...` and `--prune --older-than AGE` (open issue 13): threads
go with every payload no remaining thread holds, the SQLite file shrinks; a resume whose
payload is gone is a one-line error. Real CLI processes on a real SQLite file."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

from tests.cli_durable_models import kill_in_sleeping_block
from tests.test_cli import ROOT, SCRIPT, _env, run

MODEL = "tests.cli_durable_models:model"


def _db() -> Path:
    return Path(os.environ["XDG_STATE_HOME"]) / "rlm-graph" / "threads.db"


def _payload_rows() -> int:
    conn = sqlite3.connect(_db())
    try:
        row = conn.execute("SELECT count(*) FROM store WHERE prefix = 'rlm_graph.payloads'")
        return int(row.fetchone()[0])
    finally:
        conn.close()


def _size() -> int:
    return sum(p.stat().st_size for p in _db().parent.glob("threads.db*"))


def _ask(tmp_path: Path, thread: str, ctx: Path, model: str = MODEL) -> str:
    proc = run("how long?", "--context-file", str(ctx), "--model", model, "--quiet",
               "--thread", thread, CALL_LOG=str(tmp_path / "calls"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _big_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text("".join(f"line {i} of {name}: some text\n" for i in range(60_000)))
    return path


def test_delete_keeps_a_payload_another_thread_holds_then_frees_it(tmp_path: Path) -> None:
    ctx = _big_file(tmp_path, "shared.txt")  # ~1.8 MB, read by two threads: one stored copy
    size = len(ctx.read_text())
    assert _ask(tmp_path, "one", ctx) == _ask(tmp_path, "two", ctx) == str(size)
    assert _payload_rows() == 1
    before = _size()
    gone = run("threads", "--delete", "one")
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.startswith("deleted 1 thread (one); no payload freed"), gone.stdout
    assert _payload_rows() == 1  # thread "two" still holds it
    again = run("resume", "two")
    assert again.returncode == 0 and again.stdout.strip() == str(size)
    gone = run("threads", "--delete", "two")
    assert gone.returncode == 0, gone.stderr
    assert "1 payload no other thread holds" in gone.stdout, gone.stdout
    assert _payload_rows() == 0
    assert _size() < before - size  # VACUUM gave the payload's space back
    assert run("threads").stdout.strip() == "no threads yet"
    resumed = run("resume", "one")
    assert resumed.returncode == 2
    assert resumed.stderr.strip() == (
        "rlm-graph: error: unknown thread 'one'; list them with `rlm-graph threads`"
    )


def test_a_typo_in_the_ids_deletes_nothing(tmp_path: Path) -> None:
    ctx = tmp_path / "in.txt"
    ctx.write_text("hello world")
    _ask(tmp_path, "kept", ctx)
    proc = run("threads", "--delete", "kept", "nope")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "rlm-graph: error: unknown thread 'nope'; list them with `rlm-graph threads`"
    )
    assert run("resume", "kept").stdout.strip() == "11" and _payload_rows() == 1


def test_a_childs_chunk_goes_with_its_thread(tmp_path: Path) -> None:
    ctx = _big_file(tmp_path, "parent.txt")
    assert _ask(tmp_path, "kid", ctx, "tests.cli_durable_models:delegating_model") == "700"
    assert _payload_rows() == 2  # the file and the child's 700-character chunk
    gone = run("threads", "--delete", "kid")
    assert "2 payloads no other thread holds" in gone.stdout, gone.stdout
    assert _payload_rows() == 0


def test_prune_by_age(tmp_path: Path) -> None:
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(f"text of {name}")
        _ask(tmp_path, name[0], tmp_path / name)
    kept = run("threads", "--prune", "--older-than", "1d")
    assert kept.returncode == 0 and kept.stdout.strip() == "no thread idle for longer than 1d"
    assert _payload_rows() == 2
    time.sleep(1.1)
    gone = run("threads", "--prune", "--older-than", "1s")
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.startswith("deleted 2 threads (")
    assert "idle for longer than 1s" in gone.stdout
    assert _payload_rows() == 0 and run("threads").stdout.strip() == "no threads yet"
    bad = run("threads", "--prune", "--older-than", "soon")
    assert bad.returncode == 2 and "not an age: 'soon'" in bad.stderr


def _killed_mid_run(tmp_path: Path, thread: str) -> dict[str, str]:
    """A run SIGKILLed in its sleeping second block; the env to resume it with."""
    calls, sleep, ctx = tmp_path / "calls", tmp_path / "sleep", tmp_path / "in.txt"
    ctx.write_text("hello world")
    sleep.write_text("30")
    env = _env(CALL_LOG=str(calls), SLEEP_FILE=str(sleep))
    argv = [SCRIPT, "how long?", "--context-file", str(ctx), "--model", MODEL, "--quiet",
            "--thread", thread]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    kill_in_sleeping_block(proc, calls)
    sleep.write_text("0")
    return {"CALL_LOG": str(calls), "SLEEP_FILE": str(sleep)}


def test_a_resume_whose_payload_is_gone_is_a_one_line_error(tmp_path: Path) -> None:
    env = _killed_mid_run(tmp_path, "lost")
    conn = sqlite3.connect(_db())  # as an expiry sweep of the store would
    conn.execute("DELETE FROM store WHERE prefix = 'rlm_graph.payloads'")
    conn.commit()
    conn.close()
    resumed = run("resume", "lost", **env)
    assert resumed.returncode == 1
    assert resumed.stderr.strip() == (
        "rlm-graph: error: thread lost cannot continue: its input is no longer stored (deleted "
        "or expired); ask again: rlm-graph 'how long?' [--context-file PATH], and delete this "
        "one: rlm-graph threads --delete lost"
    )
