"""Scripted model for the CLI crash test: block 1 sets x, block 2 sleeps as many seconds as the
file $SLEEP_FILE says (read when the block runs, so the test can make the resumed one short),
block 3 answers x. Each call appends a line to $CALL_LOG (calls counted across processes)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage

from tests.fakes import FakeChatModel, code, depth, final, last_text, turn


def kill_in_sleeping_block(proc: subprocess.Popen[Any], calls: Path) -> None:
    """SIGKILL a CLI run of :func:`model` once its 2nd reply (the sleeping block) was made,
    asserting it was still running; the process is reaped either way."""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if calls.exists() and len(calls.read_text().splitlines()) >= 2:
                break
            time.sleep(0.1)
        time.sleep(1.0)  # inside the sleeping block
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def model() -> FakeChatModel:
    """The scripted model (a zero-argument factory for ``--model``)."""
    sleep_file = os.environ.get("SLEEP_FILE", "")
    sleep = f"float(open({sleep_file!r}).read())" if sleep_file else "0"
    replies = [
        code("x = len(context)\nprint(x)"),
        code(f"import time\ntime.sleep({sleep})\nprint('slept')"),
        code("final_answer(x)"),
    ]

    def respond(messages: list[BaseMessage]) -> str:
        with open(os.environ["CALL_LOG"], "a") as f:
            f.write(f"{turn(messages)}\n")
        return replies[min(turn(messages), 2)]

    return FakeChatModel(respond=respond)


def printing_model() -> FakeChatModel:
    """``print(41)``, then the first line of what was observed as the answer."""

    def respond(messages: list[BaseMessage]) -> str:
        if turn(messages) == 0:
            return code("print(41)")
        seen = re.search(r"Observation:\n(.*)", last_text(messages))
        return final(seen.group(1) if seen else "nothing")

    return FakeChatModel(respond=respond)


def delegating_model() -> FakeChatModel:
    """The root hands the first 700 characters of its context to a child, which measures it."""

    def respond(messages: list[BaseMessage]) -> str:
        if depth(messages) == 0:
            return code("final_answer(rlm_query('Measure it.', context[:700]))")
        if turn(messages) == 0:
            return code("print(len(context))")
        seen = re.search(r"Observation:\n(\S+)", last_text(messages))
        return final(seen.group(1) if seen else "nothing")

    return FakeChatModel(respond=respond)
