"""Issue 11 item 7: threads do not outlive their block's time.

Policy: a worker's threads share one CPU budget per block (``exec_timeout`` on every CPU plus
1 s, callbacks or not) and a small one between blocks (``Sandbox.idle_cpu_seconds``). The
zygote kills a worker past its budget; the next result says why and that variables are lost.
"""

from __future__ import annotations

import random
import threading
import time

from rlm_graph.sandbox import ExecResult, Sandbox

BURN_IN_BACKGROUND = (
    "import threading\n"
    "def burn():\n"
    "    while True:\n"
    "        pass\n"
    "threading.Thread(target=burn, daemon=True).start()\n"
    "x = 41\n"
)


def test_a_thread_burning_cpu_after_its_block_is_stopped() -> None:
    with Sandbox(exec_timeout=5) as sb:
        sb.idle_cpu_seconds = 0.5
        first = sb.run(BURN_IN_BACKGROUND)
        assert first.error is None and not first.restarted
        time.sleep(2.0)  # the model is thinking; the thread would burn all along
        res = sb.run("print(x + 1)")
        assert res.restarted, res
        assert "between blocks" in (res.error or "") and "CPU" in (res.error or "")
        assert sb.run("print('fine')").output == "fine\n"


def test_idle_threads_may_outlive_their_block() -> None:
    with Sandbox(exec_timeout=5) as sb:
        sb.idle_cpu_seconds = 0.5
        sb.run(
            "import threading\nev = threading.Event()\n"
            "t = threading.Thread(target=ev.wait)\nt.start()"
        )
        time.sleep(1.5)
        res = sb.run("ev.set(); t.join(); print('joined')")
        assert res.output == "joined\n" and not res.restarted, res


def test_callback_loop_in_a_thread_does_not_give_the_main_thread_unlimited_cpu() -> None:
    # The clock stops while any callback is in flight: a thread calling llm_query in a loop
    # used to keep it stopped while the main thread burned CPU without end.
    code = (
        "import threading\n"
        "def ask():\n"
        "    while True:\n"
        "        llm_query('x')\n"
        "for _ in range(8):  # overlapping calls: one is always in flight\n"
        "    threading.Thread(target=ask, daemon=True).start()\n"
        "while True:\n"
        "    pass\n"
    )

    def slow_ok(prompt: str) -> str:
        time.sleep(random.uniform(0.1, 0.3))
        return "ok"

    got: list[ExecResult] = []
    with Sandbox(exec_timeout=1, handlers={"llm_query": slow_ok}) as sb:
        thread = threading.Thread(target=lambda: got.append(sb.run(code)), daemon=True)
        thread.start()
        thread.join(40)
        assert got, "the block ran on past its CPU budget"
        res = got[0]
        assert res.restarted and "during the block" in (res.error or ""), res.error
        assert sb.run("print(1)").output == "1\n"
