"""Issue 11 item 5: frames from a hostile worker cannot crash the host or exhaust its memory.

Model code bypasses its helpers and writes frames of its own on the protocol fd (3).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from rlm_graph.sandbox import Sandbox

REPO = Path(__file__).resolve().parent.parent


def forged(body: str) -> str:
    """Model code that sends ``body`` (Python expression for the bytes) as one frame."""
    return (
        "import socket, struct, time\n"
        "s = socket.socket(fileno=3)\n"
        f"b = {body}\n"
        "s.sendall(struct.pack('>I', len(b)) + b)\n"
        "time.sleep(5)\n"
    )


def test_deeply_nested_frame_restarts_the_worker() -> None:
    with Sandbox(exec_timeout=5) as sb:
        res = sb.run(forged("b'[' * 100000 + b']' * 100000"))
        assert res.restarted and res.error is not None
        assert "protocol error" in res.error and "nested" in res.error
        assert sb.run("print('fine')").output == "fine\n"


def test_done_frame_with_wrong_types_restarts_the_worker() -> None:
    with Sandbox(exec_timeout=5) as sb:
        res = sb.run(forged('b\'{"op":"done","error":123,"final_answer":null}\''))
        assert res.restarted and isinstance(res.error, str) and "protocol error" in res.error
        res = sb.run(forged('b\'{"op":"done","error":null,"final_answer":["a",{"b":1}]}\''))
        assert res.restarted and res.final_answer is None
        assert "final_answer" in (res.error or "")


def test_unknown_or_shapeless_frames_restart_the_worker() -> None:
    with Sandbox(exec_timeout=5) as sb:
        for body in ("b'[1, 2]'", 'b\'{"op":"exec"}\'', 'b\'{"op":"call","id":"x"}\''):
            res = sb.run(forged(body))
            assert res.restarted and "protocol error" in (res.error or ""), (body, res.error)


def test_lone_surrogates_from_the_worker_are_replaced() -> None:
    with Sandbox(exec_timeout=5, handlers={"llm_query": lambda p: p}) as sb:
        res = sb.run(forged('b\'{"op":"done","error":"\\\\udc80 e","final_answer":"\\\\ud800x"}\''))
        assert not res.restarted, res.error
        assert res.final_answer is not None and res.error is not None
        res.final_answer.encode("utf-8")  # printable: no lone surrogate left
        res.error.encode("utf-8")
    # A fresh sandbox: the forging block above is still running (its own "done" comes later).
    with Sandbox(exec_timeout=5, handlers={"llm_query": lambda p: p}) as sb:
        res = sb.run("final_answer('\\ud800 ok')")
        assert not res.restarted, res.error
        assert res.final_answer == "\ufffd ok"
        res = sb.run("print(llm_query('a\\udfffb'))")
        assert res.error is None and res.output == "a\ufffdb\n"


PEAK_SCRIPT = """
import json, resource, sys
sys.path.insert(0, {repo!r})
from rlm_graph.sandbox import Sandbox
with Sandbox(exec_timeout=20, memory_limit_mb=2048) as sb:
    sb.run("1")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = sb.run({code!r})
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"grew_kib": after - before, "error": res.error, "restarted": res.restarted}}))
"""


def test_a_frame_of_empty_lists_does_not_blow_up_host_memory() -> None:
    # 32 MiB of "[]," decodes to about 26x its size (858 MiB) without a budget.
    code = forged("b'[' + b'[],' * (32 * 1024 * 1024 // 3) + b'[]]'")
    script = PEAK_SCRIPT.format(repo=str(REPO), code=code)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["restarted"] and "protocol error" in got["error"], got
    assert "decoded size" in got["error"], got
    assert got["grew_kib"] < 200 * 1024, got  # the frame itself is 32 MiB; decoded it was 858


def test_bytes_in_flight_across_callbacks_are_capped() -> None:
    release = threading.Event()
    seen: list[int] = []

    def slow(prompt: str) -> str:
        seen.append(len(prompt))
        release.wait(20)
        return "ok"

    with Sandbox(exec_timeout=30, handlers={"llm_query": slow}) as sb:
        sb.max_bytes_in_flight = 10 << 20
        code = (
            "import threading\n"
            "results = []\n"
            "def go():\n"
            "    try:\n"
            "        results.append(llm_query('x' * (4 << 20)))\n"
            "    except RuntimeError as e:\n"
            "        results.append(str(e))\n"
            "ts = [threading.Thread(target=go) for _ in range(5)]\n"
            "[t.start() for t in ts]\n"
            "import time\n"
            "while sum(1 for r in results if 'in flight' in r) < 3 and len(results) < 5:\n"
            "    time.sleep(0.05)\n"
        )
        timer = threading.Timer(3.0, release.set)
        timer.start()
        res = sb.run(code + "[t.join() for t in ts]\nprint(sorted(r[:40] for r in results))\n")
        timer.cancel()
        assert res.error is None, res.error
        assert res.output.count("'ok'") == 2, res.output
        assert res.output.count("bytes in flight") == 3, res.output
        assert max(len(seen), 0) == 2


def test_decoded_size_is_an_upper_bound_of_what_decoding_takes() -> None:
    import tracemalloc

    from rlm_graph.sandbox import protocol

    n = 20000
    shapes = [
        [[]] * n, [""] * n, ["ab"] * n, [{"": 0}] * n, [{"k": [1.5, None]}] * n, [1.5] * n,
        "x" * 100000, "é😀," * 30000, ['a\\"b,[{'] * n, {"k" + str(i): i for i in range(n)},
    ]  # fmt: skip
    for value in shapes:
        body = json.dumps(value, ensure_ascii=False).encode()
        tracemalloc.start()
        decoded = json.loads(body.decode())
        used = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert decoded == value
        assert protocol.decoded_size(body) >= used, (str(value)[:30], used)


def test_string_contents_do_not_count_as_structure() -> None:
    from rlm_graph.sandbox import protocol

    body = json.dumps(['a\\"b,[{' * 1000, {"k,:": "v\\"}, "\\\\"]).encode()
    assert protocol._skeleton(body) == b'["", {"": ""}, ""]'
    text = ",".join(["a,b"] * 100000)  # CSV in a string: commas that are not separators
    body = json.dumps({"op": "call", "args": ["q", text]}).encode()
    assert protocol.decode(body)["args"][1] == text
    assert protocol.clean_text("a\ud800b\ud83d\ude00") == "a\ufffdb\U0001f600"
