"""The CLI's durable runs: SQLite checkpoints in $XDG_STATE_HOME/rlm-graph by default,
`--thread`, `rlm-graph resume ID` after a SIGKILL, `rlm-graph threads`, `--no-checkpoint`."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.cli_durable_models import kill_in_sleeping_block
from tests.test_cli import ROOT, SCRIPT, _env, run

MODEL = "tests.cli_durable_models:model"


def _threads_db() -> Path:
    return Path(os.environ["XDG_STATE_HOME"]) / "rlm-graph" / "threads.db"


def test_a_run_is_checkpointed_under_a_printed_thread_and_listed(tmp_path: Path) -> None:
    ctx = tmp_path / "in.txt"
    ctx.write_text("hello world")
    proc = run("how long is it?", "--context-file", str(ctx), "--model", MODEL,
               CALL_LOG=str(tmp_path / "calls"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "11"
    quiet = run("q", "--model", MODEL, "--quiet", "--json", CALL_LOG=str(tmp_path / "calls"))
    assert quiet.stderr == "" and '"thread_id": "' in quiet.stdout
    thread = re.search(r"thread (\w+) \(continue it with: rlm-graph resume \1\)", proc.stderr)
    assert thread, proc.stderr
    listed = run("threads")
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith(thread.group(1)))
    assert " done " in line and "'how long is it?'" in line and "'11'" in line
    again = run("resume", thread.group(1))  # a finished thread just shows its answer
    assert again.returncode == 0 and again.stdout.strip() == "11"
    assert _threads_db().is_file()


def test_no_checkpoint_keeps_nothing(tmp_path: Path) -> None:
    proc = run("q?", "--model", MODEL, "--quiet", "--no-checkpoint",
               CALL_LOG=str(tmp_path / "calls"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "thread" not in proc.stderr
    assert not _threads_db().exists()


def test_resume_of_an_unknown_thread_is_a_one_line_error() -> None:
    proc = run("resume", "nope")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "rlm-graph: error: unknown thread 'nope'; list them with `rlm-graph threads`"
    )


def test_sigkill_then_rlm_graph_resume_continues_with_the_repl(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    ctx = tmp_path / "in.txt"
    ctx.write_text("hello world")
    sleep = tmp_path / "sleep"
    sleep.write_text("30")
    env = _env(CALL_LOG=str(calls), SLEEP_FILE=str(sleep))
    proc = subprocess.Popen(
        [
            SCRIPT,
            "how long?",
            "--context-file",
            str(ctx),
            "--model",
            MODEL,
            "--quiet",
            "--thread",
            "crash1",
            "--max-llm-calls",
            "3",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    kill_in_sleeping_block(proc, calls)
    listed = run("threads")
    assert re.search(r"^crash1\s+stopped", listed.stdout, re.M), listed.stdout
    sleep.write_text("0")
    resumed = run("resume", "crash1", "--json", CALL_LOG=str(calls), SLEEP_FILE=str(sleep))
    assert resumed.returncode == 0, resumed.stderr
    assert '"answer": "11"' in resumed.stdout  # block 3 read x, set by block 1 before the kill
    assert len(calls.read_text().splitlines()) == 3  # as many calls as an uninterrupted run
    conn = sqlite3.connect(_threads_db())
    payloads = conn.execute("SELECT count(*) FROM store WHERE prefix = 'rlm_graph.payloads'")
    assert payloads.fetchone() == (1,)


@pytest.mark.parametrize(
    ("answer", "editor", "expected"),
    [
        ("y\n", None, "41"),
        ("e\n", "sed -i s/41/99/", "99"),
        ("n\nnot today\n", None, "A reviewer rejected this code; it did not run: not today"),
    ],
)
@pytest.mark.parametrize("durable", [True, False])
def test_approve_shows_the_code_and_asks(
    answer: str, editor: str | None, expected: str, durable: bool
) -> None:
    flags = [] if durable else ["--no-checkpoint"]
    env = {"EDITOR": editor} if editor else {}
    proc = run("q?", "--model", "tests.cli_durable_models:printing_model", "--approve", "code",
               *flags, stdin=answer, **env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected
    assert "print(41)" in proc.stderr and "Run it? [y]es / [n]o / [e]dit:" in proc.stderr
