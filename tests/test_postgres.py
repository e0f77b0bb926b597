"""Beyond one machine (issue 13 item 5): a run started by one process is SIGKILLed and resumed
by another through a real PostgreSQL; the payload store lives in the same database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import postgres_server

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("langgraph.checkpoint.postgres")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def _script(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.durable_run", *args]


@pytest.mark.parametrize("child", [False, True])
def test_sigkill_then_resume_in_another_process_through_postgres(
    postgres_url: str, tmp_path: Path, child: bool
) -> None:
    log = tmp_path / "calls.log"
    thread = f"pg-{child}-{os.getpid()}"
    args = [postgres_url, thread, str(log), "--sleep", "4"] + (["--child"] if child else [])
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(_script(*args), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if '"code"' in line and "time.sleep" in line:
                break
        time.sleep(1.0)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    resumed = subprocess.run(_script(*args, "--resume"), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads(resumed.stdout.splitlines()[-1])["result"]
    assert result["answer"] == ("42 bird" if child else "42")
    assert len(log.read_text().splitlines()) == (5 if child else 3)
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM store WHERE prefix = 'rlm_graph.payloads'"
        ).fetchone()
    assert rows is not None and rows[0] >= 1  # the payload is in Postgres, not a local file
