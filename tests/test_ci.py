"""`.ci/run`'s own logic: per-step timings, stop on the first failure, pytest's exit code 5.

The script is sourced (which defines its steps without running them) with a fake `uv` on PATH.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / ".ci" / "run"


def bash(snippet: str, tmp_path: Path, uv_exit: int = 0) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "uv").write_text(f'#!/bin/sh\necho "fake uv $*"\nexit {uv_exit}\n')
    (fake / "uv").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-c", f'source "{CI}"\n{snippet}'],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(("pytest_exit", "expected"), [(0, 0), (1, 1), (2, 2), (5, 1)])
def test_run_tests_exit_codes(tmp_path: Path, pytest_exit: int, expected: int) -> None:
    proc = bash("run_tests", tmp_path, uv_exit=pytest_exit)
    assert proc.returncode == expected, proc.stderr
    assert "fake uv run --all-extras pytest" in proc.stdout
    assert ("collected no tests" in proc.stderr) == (pytest_exit == 5)


def test_steps_are_timed_and_the_first_failure_stops_the_run(tmp_path: Path) -> None:
    proc = bash('step "first" true\nstep "second" false\nstep "third" true', tmp_path)
    assert proc.returncode == 1
    assert "::: first: " in proc.stdout and "s (exit 0)" in proc.stdout
    assert "::: second: " in proc.stdout and "s (exit 1)" in proc.stdout
    assert "FAILED at step 'second'" in proc.stderr
    assert "::: third" not in proc.stdout


def test_sourcing_runs_nothing(tmp_path: Path) -> None:
    proc = bash("true", tmp_path)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
