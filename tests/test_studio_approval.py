"""Approval through the real `langgraph dev` server and `langgraph_sdk` (issue 13 item 4):
approve, edit and reject at depth 0 and depth 1, with the server's own checkpointer and store
(the payload goes through the server's store)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_studio import client, server  # noqa: F401 - the module's server fixtures

pytestmark = pytest.mark.studio
APPROVE = {"approve": "code"}


def _wait(client: Any, thread_id: str, **kwargs: Any) -> dict[str, Any]:  # noqa: F811
    out = client.runs.wait(thread_id, "rlm", context=APPROVE, **kwargs)
    assert not (isinstance(out, dict) and out.get("__error__")), out
    return out  # type: ignore[no-any-return]


def _interrupt_values(client: Any, thread_id: str) -> list[dict[str, Any]]:  # noqa: F811
    state = client.threads.get_state(thread_id)
    values = [i["value"] for i in state.get("interrupts") or []]
    if not values:
        values = [i["value"] for t in state["tasks"] for i in t.get("interrupts") or []]
    return values


def test_approve_then_edit_at_depth_1(client: Any) -> None:  # noqa: F811
    thread = client.threads.create()["thread_id"]
    _wait(client, thread, input={"query": "How long?", "context": "x" * 5000})
    [asked] = _interrupt_values(client, thread)
    assert asked["depth"] == 0 and "rlm_query" in asked["code"] and asked["query"] == "How long?"
    _wait(client, thread, command={"resume": {"action": "approve"}})
    [asked] = _interrupt_values(client, thread)
    assert asked["depth"] == 1 and len(asked["path"]) == 2
    edited = {"action": "edit", "code": "print('child saw 7 chars')"}
    out = _wait(client, thread, command={"resume": edited})
    assert _interrupt_values(client, thread) == []
    assert out["answer"] == "child saw 7 chars"  # the edited code's output, not 5000


def test_reject_at_depth_0_and_approve_at_depth_1(client: Any) -> None:  # noqa: F811
    thread = client.threads.create()["thread_id"]
    _wait(client, thread, input={"query": "How long?", "context": "abc"})
    _wait(client, thread, command={"resume": {"action": "reject", "message": "not now"}})
    # The root model's next reply ("unexpected") ends the run; nothing ran.
    state = client.threads.get_state(thread)
    assert state["values"]["answer"] == "unexpected"
    assert any(
        "A reviewer rejected this code; it did not run: not now" in str(m.get("content"))
        for m in state["values"]["messages"]
    )
    thread = client.threads.create()["thread_id"]
    _wait(client, thread, input={"query": "How long?", "context": "abc"})
    _wait(client, thread, command={"resume": {"action": "approve"}})
    out = _wait(client, thread, command={"resume": {"action": "approve"}})
    assert out["answer"] == "child saw 3 chars"
