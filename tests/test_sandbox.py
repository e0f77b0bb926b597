"""Sandbox basics: persistence, payload types, output capture, callbacks, final answers."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rlm_graph.sandbox import PayloadError, Sandbox, SandboxError


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox("hello world", "what is it?", exec_timeout=2) as sb:
        yield sb


def test_variables_persist_between_blocks(sandbox: Sandbox) -> None:
    first = sandbox.run("x = 41\nprint('set')")
    second = sandbox.run("print(x + 1)")
    assert first.error is None and first.output == "set\n"
    assert second.output == "42\n"
    assert not second.restarted and not second.timed_out


def test_context_and_query_are_variables(sandbox: Sandbox) -> None:
    result = sandbox.run("print(type(context).__name__, len(context), query)")
    assert result.output == "str 11 what is it?\n"


def test_limits_inside_the_worker(sandbox: Sandbox) -> None:
    code = (
        "import resource\n"
        "print(resource.getrlimit(resource.RLIMIT_CORE))\n"
        "print(resource.getrlimit(resource.RLIMIT_AS)[0] > 0)"
    )
    assert sandbox.run(code).output == "(0, 0)\nTrue\n"


def test_default_memory_limit_leaves_room_for_threads() -> None:
    # RLIMIT_AS counts virtual memory: thread stacks and malloc arenas must still fit.
    code = (
        "import threading\n"
        "words = context.split()\n"
        "box = []\n"
        "ts = [threading.Thread(target=lambda: box.append(len(words))) for _ in range(64)]\n"
        "for t in ts: t.start()\n"
        "for t in ts: t.join()\n"
        "print(len(box), box[0])"
    )
    with Sandbox("word " * 2_000_000) as sb:
        result = sb.run(code)
    assert result.error is None, result.error
    assert result.output == "64 2000000\n"


def test_exit_is_sys_exit(sandbox: Sandbox) -> None:
    result = sandbox.run("exit(4)")
    assert result.error is not None and "SystemExit: 4" in result.error
    assert not result.restarted


def test_last_expression_is_echoed(sandbox: Sandbox) -> None:
    assert sandbox.run("1 + 2").output == "3\n"
    assert sandbox.run("None").output == ""


def test_error_gives_traceback_and_keeps_variables(sandbox: Sandbox) -> None:
    sandbox.run("y = 'kept'")
    result = sandbox.run("def f():\n    return 1 / 0\nf()")
    assert result.error is not None
    assert "ZeroDivisionError" in result.error and "return 1 / 0" in result.error
    assert "repl.py" not in result.error, "the worker's own frames should be hidden"
    assert sandbox.run("print(y)").output == "kept\n"


def test_environment_is_empty_and_cwd_is_scratch(sandbox: Sandbox) -> None:
    result = sandbox.run(
        "import os\nprint(sorted(k for k in os.environ if k not in ('LANG', 'MALLOC_ARENA_MAX',"
        " 'LC_CTYPE')))\nprint(os.getcwd())"
    )
    lines = result.output.splitlines()
    assert lines[0] == "[]"
    assert "rlm-sandbox-" in lines[1]


@pytest.mark.parametrize(
    ("payload", "expr", "expected"),
    [
        ("héllo ✓ 😀", "context", "'héllo ✓ 😀'"),
        ("", "len(context)", "0"),
        ([1, "a", {"b": [True, None]}], "context", "[1, 'a', {'b': [True, None]}]"),
        ({"k": 1.5}, "context['k'] * 2", "3.0"),
        (7, "context + 1", "8"),
        (None, "context is None", "True"),
        (False, "context", "False"),
    ],
)
def test_payload_types(payload: Any, expr: str, expected: str) -> None:
    with Sandbox(payload) as sb:
        assert sb.run(expr).output == expected + "\n"


class TaggedStr(str):
    """A str subclass: sent through the UTF-8 fallback, arrives as a plain str."""


@pytest.mark.parametrize(
    "text", ["plain ascii", "latin-1 é", "ucs-2 \u0100 ✓", "ucs-4 😀", "lone \ud800 surrogate"]
)
def test_every_string_layout_arrives_intact(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from rlm_graph.sandbox import payload

    text = text * 1000
    expected = f"True True {len(text)}\n"
    check = f"print(context == {text!r}, hash(context) == hash({text!r}), len(context))"
    with Sandbox(text) as sb:
        assert sb.run(check).output == expected
    monkeypatch.setattr(payload, "_storage", lambda *_: None)  # the slice-and-encode path
    with Sandbox(text) as sb:
        assert sb.run(check).output == expected
    if "\ud800" not in text:
        with Sandbox(TaggedStr(text)) as sb:
            assert sb.run(check).output == expected


@pytest.mark.parametrize("payload", [b"bytes", {1, 2}, object(), [1, object()], {"k": b"x"}])
def test_unsupported_payload_names_accepted_types(payload: Any) -> None:
    with pytest.raises(PayloadError) as info:
        with Sandbox(payload) as sb:
            sb.run("1")
    message = str(info.value)
    for name in ("str", "list", "dict", "int", "float", "bool", "None"):
        assert name in message


def test_output_is_capped_with_head_tail_and_true_length() -> None:
    with Sandbox(max_output_chars=100) as sb:
        result = sb.run("print('A' * 50 + 'B' * 1000 + 'C' * 50, end='')")
    assert result.output_chars == 1100
    assert result.output.startswith("A" * 50)
    assert result.output.endswith("C" * 50)
    assert "1,100 characters in total" in result.output
    assert len(result.output) < 200


def test_output_counts_characters_not_bytes() -> None:
    with Sandbox(max_output_chars=10) as sb:
        result = sb.run("print('é' * 30, end='')")
    assert result.output_chars == 30
    assert result.output.startswith("é" * 5) and result.output.endswith("é" * 5)


def test_final_answer_cannot_be_swallowed(sandbox: Sandbox) -> None:
    result = sandbox.run(
        "try:\n    final_answer(6 * 7)\nexcept Exception:\n    print('swallowed')\nprint('after')"
    )
    assert result.final_answer == "42"
    assert result.output == "" and result.error is None


def test_final_answer_recorded_even_if_base_exception_caught(sandbox: Sandbox) -> None:
    result = sandbox.run(
        "try:\n    final_answer('done')\nexcept BaseException:\n    pass\nprint('went on')"
    )
    assert result.final_answer == "done"
    assert result.output == "went on\n"
    assert sandbox.run("print(1)").final_answer is None


def test_final_answer_from_a_thread(sandbox: Sandbox) -> None:
    code = (
        "import threading\n"
        "t = threading.Thread(target=final_answer, args=('from thread',))\n"
        "t.start(); t.join()\n"
        "print('main continues')"
    )
    result = sandbox.run(code)
    assert result.final_answer == "from thread"
    assert result.output == "main continues\n"


def test_missing_handler_raises_in_worker(sandbox: Sandbox) -> None:
    result = sandbox.run("llm_query('hi')")
    assert result.error is not None
    assert "llm_query is not available in this sandbox" in result.error
    result = sandbox.run("rlm_query_batched(['a'])")
    assert result.error is not None and "rlm_query is not available" in result.error


def test_llm_and_rlm_callbacks() -> None:
    seen: list[Any] = []

    def rlm(query: str, context: Any = None) -> str:
        seen.append((query, context))
        return f"child:{query}:{context}"

    handlers = {"llm_query": lambda p: p.upper(), "rlm_query": rlm}
    with Sandbox(handlers=handlers) as sb:
        assert sb.run("print(llm_query('abc'))").output == "ABC\n"
        assert sb.run("print(rlm_query('q', [1, 2]))").output == "child:q:[1, 2]\n"
    assert seen == [("q", [1, 2])]


def test_handler_error_becomes_runtime_error_in_worker() -> None:
    def broken(prompt: str) -> str:
        raise ValueError(f"bad prompt {prompt}")

    with Sandbox(handlers={"llm_query": broken}) as sb:
        result = sb.run(
            "try:\n    llm_query('p')\nexcept RuntimeError as e:\n    print('caught', e)"
        )
    assert result.output == "caught ValueError: bad prompt p\n"


def test_batched_calls_keep_order_and_isolate_failures() -> None:
    def llm(prompt: str) -> str:
        if prompt == "boom":
            raise ValueError("nope")
        time.sleep(0.01 * (5 - len(prompt) % 5))
        return prompt * 2

    def rlm(query: str, context: Any = None) -> str:
        return f"{query}|{context}"

    with Sandbox(handlers={"llm_query": llm, "rlm_query": rlm}, max_concurrency=3) as sb:
        result = sb.run("print(llm_query_batched(['a', 'bb', 'boom', 'ccc']))")
        assert result.output == "['aa', 'bbbb', 'Error: ValueError: nope', 'cccccc']\n"
        result = sb.run("print(rlm_query_batched(['q1', ('q2', {'x': 1}), ['q3', 'ctx']]))")
        assert result.output == "['q1|None', \"q2|{'x': 1}\", 'q3|ctx']\n"


def test_batched_calls_respect_max_concurrency() -> None:
    lock = threading.Lock()
    active = [0, 0]

    def llm(prompt: str) -> str:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return prompt

    with Sandbox(handlers={"llm_query": llm}, max_concurrency=3) as sb:
        result = sb.run("print(len(llm_query_batched([str(i) for i in range(12)])))")
    assert result.output == "12\n"
    assert active[1] == 3


def test_callbacks_from_32_threads_at_once() -> None:
    barrier = threading.Barrier(32, timeout=10)

    def llm(prompt: str) -> str:
        # Every call waits until all 32 are in flight: proves they run concurrently on the host.
        barrier.wait()
        return f"answer {prompt}"

    code = (
        "import threading\n"
        "res = [None] * 32\n"
        "def work(i):\n"
        "    res[i] = llm_query(str(i))\n"
        "ts = [threading.Thread(target=work, args=(i,)) for i in range(32)]\n"
        "for t in ts: t.start()\n"
        "for t in ts: t.join()\n"
        "print(res == [f'answer {i}' for i in range(32)])"
    )
    with Sandbox(handlers={"llm_query": llm}, exec_timeout=5) as sb:
        result = sb.run(code)
    assert result.error is None
    assert result.output == "True\n"


def test_in_flight_callbacks_are_capped() -> None:
    release = threading.Event()

    def llm(prompt: str) -> str:
        release.wait(10)
        return prompt

    code = (
        "import threading\n"
        "errors = []\n"
        "def work(i):\n"
        "    try:\n"
        "        llm_query(str(i))\n"
        "    except RuntimeError as e:\n"
        "        errors.append(str(e))\n"
        "ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]\n"
        "for t in ts: t.start()\n"
        "import time\n"
        "deadline = time.monotonic() + 10\n"
        "while len(errors) < 2 and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "time.sleep(0.1)\n"
        "print(len(errors), errors[:1])\n"
    )
    with Sandbox(handlers={"llm_query": llm}, exec_timeout=5) as sb:
        sb.max_in_flight = 4
        result = sb.run(code)
        release.set()
        sb.run("for t in ts: t.join()")
    assert result.output.startswith("2 ['too many concurrent callbacks (limit 4)")


def test_handlers_see_the_callers_contextvars() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[str] = []

    def llm(prompt: str) -> str:
        seen.append(var.get())
        return var.get()

    with Sandbox(handlers={"llm_query": llm}) as sb:
        token = var.set("from run()")
        try:
            result = sb.run("print(llm_query('a'), llm_query_batched(['b', 'c']))")
        finally:
            var.reset(token)
    assert result.output == "from run() ['from run()', 'from run()']\n"
    assert seen == ["from run()"] * 3


class Bubble(Exception):
    """Stands in for LangGraph's GraphBubbleUp."""


def test_passthrough_exception_leaves_run_unchanged_and_keeps_variables() -> None:
    raised = Bubble("interrupt!")

    def llm(prompt: str) -> str:
        raise raised

    with Sandbox(handlers={"llm_query": llm}) as sb:
        sb.passthrough_exceptions = (Bubble,)
        sb.run("x = 1")
        with pytest.raises(Bubble) as info:
            sb.run("try:\n    llm_query('a')\nexcept Exception:\n    print('swallowed')")
        assert info.value is raised
        after = sb.run("print(x)")
    assert after.output == "1\n"
    assert not after.restarted and after.error is None


def test_passthrough_when_model_code_catches_everything() -> None:
    def llm(prompt: str) -> str:
        raise Bubble("stop")

    code = "while True:\n    try:\n        llm_query('a')\n    except BaseException:\n        pass"
    with Sandbox(handlers={"llm_query": llm}) as sb:
        sb.passthrough_exceptions = (Bubble,)
        sb.interrupt_grace = 0.2
        sb.run("x = 1")
        with pytest.raises(Bubble):
            sb.run(code)
        after = sb.run("print(globals().get('x'))")
    assert after.output == "None\n"
    assert after.restarted and after.error is not None and "LOST" in after.error


def test_passthrough_from_batched_item() -> None:
    def llm(prompt: str) -> str:
        if prompt == "b":
            raise Bubble("stop")
        return prompt

    with Sandbox(handlers={"llm_query": llm}) as sb:
        sb.passthrough_exceptions = (Bubble,)
        with pytest.raises(Bubble):
            sb.run("llm_query_batched(['a', 'b'])")


def test_timeout_excludes_callback_time() -> None:
    def slow(prompt: str) -> str:
        time.sleep(0.6)
        return "ok"

    with Sandbox(handlers={"llm_query": slow}, exec_timeout=0.5) as sb:
        result = sb.run("print([llm_query(str(i)) for i in range(3)])")
    assert not result.timed_out and result.error is None
    assert result.callback_seconds >= 1.8
    assert result.seconds >= result.callback_seconds


def test_timeout_still_counts_code_time_between_callbacks() -> None:
    with Sandbox(handlers={"llm_query": lambda p: p}, exec_timeout=0.5) as sb:
        result = sb.run("llm_query('a')\nwhile True: pass")
    assert result.timed_out


def test_oversize_frame_refused_in_worker() -> None:
    with Sandbox(handlers={"llm_query": lambda p: str(len(p))}) as sb:
        sb.max_frame_bytes = 1000
        sb.start()
        result = sb.run("try:\n    llm_query('x' * 5000)\nexcept ValueError as e:\n    print(e)")
        assert "over the limit of 1000 bytes" in result.output
        assert sb.run("print(llm_query('x' * 10))").output == "10\n"


def forged_frame(header_length: int, body: str) -> str:
    """Model code that bypasses its helpers and writes a frame of its own on the protocol fd."""
    return (
        "import socket, struct\n"
        "s = socket.socket(fileno=3)\n"
        f"s.sendall(struct.pack('>I', {header_length}) + {body!r}.encode())\n"
        "import time; time.sleep(5)"
    )


def test_oversize_frame_refused_by_host() -> None:
    with Sandbox(exec_timeout=3) as sb:
        sb.max_frame_bytes = 1000
        sb.run("x = 1")
        result = sb.run(forged_frame(10**8, "{" * 5000))
        assert result.restarted
        assert result.error is not None
        assert "frame of 100,000,000 bytes, over the limit of 1,000 bytes" in result.error
        assert sb.run("print('fine')").output == "fine\n"


def test_malformed_frame_is_a_protocol_error() -> None:
    with Sandbox(exec_timeout=3) as sb:
        result = sb.run(forged_frame(3, "{{{"))
    assert result.restarted and result.error is not None and "malformed" in result.error


def test_closed_sandbox_refuses_to_run() -> None:
    sb = Sandbox()
    sb.close()
    with pytest.raises(SandboxError, match="closed"):
        sb.run("1")


def test_invalid_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        Sandbox(mode="docker")  # type: ignore[arg-type]
