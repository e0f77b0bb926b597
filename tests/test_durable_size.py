"""Size tests (issue 13): a 20 MB payload over 10 iterations, given as ``context_file``, grows
the SQLite database by at most 1.1 x 20 MB, and LangSmith tracing (a fake endpoint on
127.0.0.1) uploads under 1 MB. Measured in a subprocess: langsmith caches its environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cases(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "benchmarks/bench_durable.py", "--json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_20mb_payload_by_reference_is_stored_once_and_not_uploaded() -> None:
    cases = _cases("--mb", "20", "--iterations", "10", "--by-value", "no")
    assert len(cases) == 2
    for case in cases:
        payload = int(case["payload_bytes"])  # type: ignore[call-overload]
        assert case["iterations"] == 10 and case["answer"] == "done"
        assert f"0 {payload}" in str(case["first_observation"])  # the sandbox read it all
        assert int(case["db_bytes"]) <= 1.1 * payload, case  # type: ignore[call-overload]
    traced = next(c for c in cases if c["trace"])
    assert 0 < int(traced["uploaded_bytes"]) < 1_000_000, traced  # type: ignore[call-overload]


def test_the_fake_endpoint_sees_a_payload_given_by_value() -> None:
    # The same measurement notices the payload when it is in the root span's input.
    cases = _cases("--mb", "2", "--iterations", "2", "--by-value", "yes")
    traced = next(c for c in cases if c["trace"])
    assert int(traced["uploaded_bytes"]) > int(traced["payload_bytes"])  # type: ignore[call-overload]
