"""Host-side pieces of the sandbox in isolation: output capping, frames, callback allowlist."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from rlm_graph.sandbox.callbacks import CallbackRun
from rlm_graph.sandbox.channel import FrameReader
from rlm_graph.sandbox.child import frames
from rlm_graph.sandbox.output import CappedOutput
from rlm_graph.sandbox.payload import str_kind


def test_output_under_the_cap_is_kept_whole() -> None:
    out = CappedOutput(10)
    out.feed(b"0123456789")
    assert out.text() == "0123456789" and out.total_chars == 10


def test_output_split_inside_a_multibyte_character() -> None:
    out = CappedOutput(4)
    data = ("ab" + "€" * 20 + "yz").encode()
    for i in range(len(data)):  # one byte at a time: characters arrive split
        out.feed(data[i : i + 1])
    assert out.total_chars == 24
    text = out.text()
    assert text.startswith("ab\n") and text.endswith("\nyz")
    assert "20 characters omitted" in text and "24 characters in total" in text


def test_zero_cap_still_reports_length() -> None:
    out = CappedOutput(0)
    out.feed(b"hello")
    assert "5 characters in total" in out.text()


def test_frame_reader_reassembles_and_caps() -> None:
    reader = FrameReader(max_bytes=100)
    data = frames.encode({"op": "call", "id": 1}) + frames.encode({"op": "done"})
    got: list[Any] = []
    for i in range(len(data)):
        got += reader.feed(data[i : i + 1])
    assert got == [{"op": "call", "id": 1}, {"op": "done"}]
    with pytest.raises(frames.FrameTooLarge, match="101 bytes, over the limit of 100"):
        FrameReader(max_bytes=100).feed(frames.HEADER.pack(101))


class FakeWorker:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.event = threading.Event()

    def send(self, message: dict[str, Any]) -> bool:
        self.sent.append(message)
        self.event.set()
        return True


def test_only_allowlisted_callbacks_reach_handlers() -> None:
    called: list[str] = []
    handlers = {"llm_query": lambda p: called.append(p) or "ok", "system": lambda c: called}
    calls = CallbackRun(
        handlers, max_concurrency=2, max_in_flight=4, passthrough=(), wake=lambda: None
    )
    worker = FakeWorker()
    for name in ("system", "__import__", "llm_query_batchedx"):
        calls.dispatch({"op": "call", "id": 7, "name": name, "args": ["rm -rf /"]}, worker)  # type: ignore[arg-type]
    assert called == []
    assert [m["ok"] for m in worker.sent] == [False, False, False]
    assert all("no callback named" in m["error"] for m in worker.sent)


@pytest.mark.parametrize(
    ("text", "kind"),
    [("abc", "ascii"), ("é", "latin1"), ("Ā", "ucs2"), ("😀", "ucs4"), ("", "ascii")],
)
def test_str_kind(text: str, kind: str) -> None:
    assert str_kind(text) == kind
