"""Run one task with the reference implementation ``rlms`` (alexzhang13/rlm), in its own process.

Usage: ``python rlms_child.py REQUEST.json RESULT.json``. The request holds the task and the
backend; the result holds the answer, usage and any error. A separate process because rlms'
local REPL runs model code with in-process ``exec`` (no per-cell timeout, process-wide
``chdir`` and stdout swapping): the parent can kill this process at its deadline, and nothing
it does touches the benchmark runner. Standalone: imports only the standard library and rlms.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

WINDOW_PHRASE = "Sub-LLM context window ≈ 500K chars."


# Small models write ```python out of habit; rlms runs only ```repl blocks. No braces here:
# rlms calls str.format on the prompt.
SMALL_MODEL_NOTE = """

Code runs only inside ```repl fences (a ```python fence is not run). One turn looks like:
```repl
print(len(context))
print(context[:300])
```
When a printed value is the answer, submit that value in code:
```repl
answer["content"] = str(result)
answer["ready"] = True
```
"""


def system_prompt(default: str, sub_window_chars: int | None) -> str:
    """rlms' own prompt; for a small model, with its real sub-call window and a fence note."""
    if not sub_window_chars:
        return default
    real = (
        f"Sub-LLM context window ≈ {sub_window_chars // 1000}K chars: keep every llm_query "
        "prompt shorter than that (slice `context` into chunks that fit)."
    )
    return default.replace(WINDOW_PHRASE, real) + SMALL_MODEL_NOTE


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Answer the request with ``rlm.RLM``; errors are reported, never raised."""
    try:
        from rlm import RLM
        from rlm.logger import RLMLogger
        from rlm.utils.prompts import RLM_SYSTEM_PROMPT
    except ImportError as exc:
        return {
            "error": f"rlms is not installed ({exc}); install it with: uv sync (Python >= 3.11)"
        }
    start = time.perf_counter()
    logger = RLMLogger()  # in memory only: the trajectory, for the row
    rlm = RLM(
        backend="openai",
        backend_kwargs=request["backend_kwargs"],
        environment="local",
        max_depth=request["max_depth"],
        max_iterations=request["max_iterations"],
        max_timeout=request["max_seconds"],
        custom_system_prompt=system_prompt(RLM_SYSTEM_PROMPT, request["sub_window_chars"]),
        orchestrator=request["orchestrator"],
        logger=logger,
        verbose=False,
    )
    try:
        result = rlm.completion(request["context"], root_prompt=request["query"])
    except Exception as exc:
        partial = getattr(exc, "partial_answer", None)
        steps = trace(logger.get_trajectory(), request.get("keep_messages", False))
        return {
            "answer": partial,
            # rlms' usage totals are lost with the exception: the root calls that answered are
            # known (one per iteration), sub-calls and tokens are not.
            "calls": steps["iterations"],
            "usage_incomplete": True,
            "seconds": time.perf_counter() - start,
            "error": f"{type(exc).__name__}: {str(exc).strip()[:300]}",
            **steps,
        }
    usage = result.usage_summary.model_usage_summaries.values()
    return {
        "answer": result.response,
        "seconds": time.perf_counter() - start,
        "calls": sum(u.total_calls for u in usage),
        "input_tokens": sum(u.total_input_tokens for u in usage),
        "output_tokens": sum(u.total_output_tokens for u in usage),
        "error": result.error,
        **trace(logger.get_trajectory(), request.get("keep_messages", False)),
    }


def trace(trajectory: dict[str, Any] | None, keep: bool) -> dict[str, Any]:
    """Iterations run, and with ``keep`` each root reply and its REPL output (shortened)."""
    iterations = (trajectory or {}).get("iterations", [])
    out: dict[str, Any] = {"iterations": len(iterations)}
    if keep:
        out["messages"] = [
            {
                "response": str(it.get("response", ""))[:2000],
                "outputs": [
                    str(block.get("result", {}).get("stdout", ""))[:800]
                    + str(block.get("result", {}).get("stderr", ""))[:400]
                    for block in it.get("code_blocks", [])
                ],
            }
            for it in iterations
        ]
    return out


def main(argv: list[str]) -> int:
    """Read the request file, write the result file."""
    with open(argv[1], encoding="utf-8") as f:
        request = json.load(f)
    out = run(request)
    with open(argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
