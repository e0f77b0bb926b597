"""TraceWriter: the JSONL stream is on disk as events happen, summaries at the end, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlm_graph.tracefile import TraceWriter, stream_path
from rlm_graph.viewer import load_trace
from tests.test_progress import recursive_events

ROOT = Path(__file__).resolve().parent.parent
META = {"query": "count errors", "model": "fake", "settings": {"max_depth": 1}}
RESULT = {"answer": "14", "usage": {"total_tokens": 45}, "iterations": 2,
          "stopped_reason": "final_answer", "messages": ["huge"], "context": "x" * 1000,
          "run_id": "R", "best_answer": "14"}  # fmt: skip


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line]


def test_jsonl_path_streams_each_event_before_returning_and_writes_nothing_else(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path, META)
    assert lines(path) == [{"record": "meta", "format": "rlm-graph-trace", "version": 1,
                            "meta": META}]  # fmt: skip
    events = recursive_events()
    for n, event in enumerate(events, start=1):
        writer.event(event)
        on_disk = lines(path)  # read by another file handle while the writer is open
        assert len(on_disk) == n + 1 and on_disk[-1] == event
    writer.close(RESULT, None)
    records = lines(path)
    assert records[1:-1] == events
    # The transcript, the input and the loop's bookkeeping are not kept.
    assert records[-1] == {"record": "end", "error": None, "result": {
        "answer": "14", "usage": {"total_tokens": 45}, "iterations": 2,
        "stopped_reason": "final_answer"}}  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl"]


def test_json_path_streams_to_the_sibling_jsonl_and_ends_with_tree_and_raw_events(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.json"
    events = recursive_events()
    with TraceWriter(path, META) as writer:
        for event in events[:5]:
            writer.event(event)
        assert not path.exists()  # only the stream exists while the run goes on
        assert len(lines(tmp_path / "t.jsonl")) == 6
        for event in events[5:]:
            writer.event(event)
        writer.close(RESULT, None)
    summary = json.loads(path.read_text())
    assert summary["meta"] == META and summary["error"] is None
    assert summary["answer"] == "14" and summary["stopped_reason"] == "final_answer"
    assert summary["events"] == events and summary["n_events"] == len(events)
    assert summary["complete"] is True
    root = summary["root"]
    assert root["run_id"] == "R" and root["iterations"][0]["children"][0]["run_id"] == "C"
    assert "messages" not in summary["result"] and "context" not in summary["result"]
    assert lines(tmp_path / "t.jsonl")[-1]["record"] == "end"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json", "t.jsonl"]


def test_html_path_writes_the_viewer_page(tmp_path: Path) -> None:
    path = tmp_path / "t.html"
    writer = TraceWriter(path, META)
    for event in recursive_events():
        writer.event(event)
    writer.close(RESULT, None)
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'id="trace-data"' in page
    assert "count errors" in page and "<script src" not in page
    assert len(lines(tmp_path / "t.jsonl")) == len(recursive_events()) + 2


def test_stream_path_rules() -> None:
    assert stream_path("a/t.jsonl") == Path("a/t.jsonl")
    assert stream_path("a/t.json") == Path("a/t.jsonl")
    assert stream_path("a/t.html") == Path("a/t.jsonl")
    assert stream_path("a/trace") == Path("a/trace.jsonl")


def test_a_failed_run_records_its_error_and_partial_answer(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    with pytest.raises(RuntimeError), TraceWriter(path, META) as writer:
        writer.event(recursive_events()[0])
        raise RuntimeError("model went away")
    summary = json.loads(path.read_text())
    assert summary["error"] == "RuntimeError: model went away" and summary["answer"] is None
    writer.close(RESULT, None)  # idempotent: the first close wins
    assert json.loads(path.read_text())["error"] == "RuntimeError: model went away"
    with pytest.raises(ValueError, match="closed"):
        writer.event(recursive_events()[1])

    partial = tmp_path / "p.jsonl"
    w = TraceWriter(partial, META)
    w.close({"best_answer": "maybe 7", "usage": {"total_tokens": 3}}, "Budget: out of tokens")
    assert lines(partial)[-1]["result"] == {"best_answer": "maybe 7", "usage": {"total_tokens": 3}}


def test_hostile_text_cannot_split_a_line_or_break_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    nasty = "a\nb\r\nc\u2028d\u2029e\x85f\udc80g\x00h</script>"
    writer = TraceWriter(path, META)
    event = {**recursive_events()[3], "code": nasty}
    writer.event(event)
    writer.close(None, None)
    raw = path.read_bytes()
    assert raw.isascii() and raw.count(b"\n") == 3
    assert load_trace(path)["events"][0]["code"] == nasty


def test_a_missing_directory_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TraceWriter(tmp_path / "nope" / "t.json", META)


WRITER_SCRIPT = """
import sys, time
from rlm_graph.tracefile import TraceWriter
from tests.test_progress import recursive_events

writer = TraceWriter(sys.argv[1], {"query": "killed"})
events = recursive_events()
for event in events[:7]:
    writer.event(event)
print("written", flush=True)
while True:  # the run goes on: keep streaming big events until killed
    writer.event({**events[3], "code": "x" * 200_000})
"""


def test_a_run_killed_by_sigkill_leaves_a_readable_stream(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "written\n"
        time.sleep(0.3)  # killed while writing 200 KB lines, most likely inside one
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not path.exists()  # the summary is written only at the end, never half
    trace = load_trace(tmp_path / "t.jsonl")
    # A kill inside a write leaves a partial last line: it is dropped and said so.
    assert trace["cut"] == (not (tmp_path / "t.jsonl").read_bytes().endswith(b"\n"))
    assert trace["complete"] is False and trace["meta"] == {"query": "killed"}
    assert trace["events"][:7] == recursive_events()[:7] and trace["n_events"] >= 7
    root = trace["root"]
    assert root["run_id"] == "R" and root["iterations"][0]["children"][0]["run_id"] == "C"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_bare_stream_keeps_no_events_in_memory(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path / "t.jsonl", META)
    for event in recursive_events():
        writer.event(event)
    assert writer.events == []  # everything is on disk; nothing to summarize at the end
    writer.close(None, None)
    assert len(lines(tmp_path / "t.jsonl")) == len(recursive_events()) + 2
