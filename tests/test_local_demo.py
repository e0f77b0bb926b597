"""The demo task family and the ``rlm-graph demo`` command, offline with scripted models."""

from __future__ import annotations

import re

import pytest
from langchain_core.messages import BaseMessage

from rlm_graph import demo
from rlm_graph.demo import answer_matches, make_task
from tests.fakes import FakeChatModel, code, final, last_text, scripted, turn

COUNT_CODE = (
    "n = sum(1 for line in context.splitlines() if ' ERROR ' in line and '[payment]' in line)\n"
    "print(n)"
)


def counting_model() -> FakeChatModel:
    """Counts with a loop over ``context`` (what the demo hopes a model does), then answers."""

    def respond(messages: list[BaseMessage]) -> str:
        if turn(messages) == 0:
            return code(COUNT_CODE, "count the matching lines")
        printed = re.search(r"Observation:\n(\d+)", last_text(messages))
        return final(printed.group(1) if printed else "unknown")

    return FakeChatModel(respond=respond)


def guessing_model() -> FakeChatModel:
    return FakeChatModel(respond=scripted(final("7")))


def test_task_is_deterministic_and_its_answer_is_right() -> None:
    a, b, c = make_task(seed=11, chars=50_000), make_task(seed=11, chars=50_000), make_task(12)
    assert a == b
    assert a.context != c.context
    assert len(a.context) >= 50_000
    recount = len(re.findall(r"^\S+ ERROR +\[payment\] ", a.context, flags=re.M))
    assert a.expected == str(recount)
    assert recount > 0
    # Service names and levels occur only in their own columns, so naive counts agree.
    naive = sum(1 for ln in a.context.splitlines() if "ERROR" in ln and "payment" in ln)
    assert naive == recount


def test_answer_matching() -> None:
    assert answer_matches("165", "165")
    assert answer_matches("There are 1,165 ERROR lines for payment.", "1165")
    assert not answer_matches("16", "165")
    assert not answer_matches("1650", "165")
    assert not answer_matches("165.5", "165")
    assert not answer_matches("unknown", "165")


def test_demo_right_answer(capsys: pytest.CaptureFixture[str]) -> None:
    rc = demo.main(
        ["--model", "tests.test_local_demo:counting_model", "--chars", "20000", "--quiet"]
    )
    out = capsys.readouterr().out
    expected = make_task(7, 20_000).expected
    assert rc == 0
    assert f"Answer:   {expected}" in out
    assert f"Expected: {expected}" in out
    assert "Match:    yes" in out


def test_demo_wrong_answer_still_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    rc = demo.main(
        ["--model", "tests.test_local_demo:guessing_model", "--chars", "5000", "--seed", "3"]
    )
    captured = capsys.readouterr()
    assert rc == 0
    assert "Match:    NO" in captured.out
    assert "answered wrongly" in captured.out
    assert "Question:" in captured.err  # progress and header go to stderr


def test_demo_bad_model_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--model", "nope/x"]) == 2
    assert "unknown model spec" in capsys.readouterr().err
    assert demo.main(["--chars", "10"]) == 2
