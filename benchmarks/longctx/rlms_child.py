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

# The small-model configuration: rlms' own prompt (about 700 tokens of advice written for
# frontier models) replaced by a short one in rlms' conventions (```repl fences, the `answer`
# dict) with two worked turns that differ in kind, as the graph's compact prompt has: with
# rlms' prompt the 1.5B model never wrote a ```repl block. rlms calls str.format on the
# prompt: literal braces are doubled; {custom_tools_section} is rlms' own field.
SMALL_MODEL_PROMPT = """\
You answer a question about data in the Python REPL variable `context` (you cannot see it). \
Each turn, write one ```repl block; only what it prints comes back to you, and variables \
persist between turns. Only ```repl fences run (a ```python fence does not).

Available in the REPL:
- `context`: the data.
- `llm_query(prompt) -> str`: ask a model about a piece of text (it reads at most about \
WINDOW chars); `llm_query_batched(prompts) -> list[str]`: many at once.
- `answer`: a dict. To finish, in a ```repl block: answer["content"] = the answer; \
answer["ready"] = True. Do this only after an output showed the answer.{custom_tools_section}

Example turns, each for a different question:

(question: what is the phone number of Dana Reyes?)
Find where the name appears, then capture the number after it with a group.
```repl
import re
m = re.search(r"Dana Reyes\\D{{0,40}}(\\d[\\d-]{{5,}})", context)
print(m.group(1) if m else "no match")
```

(question: how many orders were refunded?)
Keep the rows that mention a refund, print a few to check them, then take the total.
```repl
rows = [r for r in context.split("\\n") if "refund" in r.lower()]
print(rows[:3])
print(len(rows))
```

(after an output showed the answer 42)
```repl
answer["content"] = "42"
answer["ready"] = True
```
"""


def system_prompt(default: str, sub_window_chars: int | None) -> str:
    """rlms' own prompt; for a small model (its real sub-call window known), the short one."""
    if not sub_window_chars:
        return default
    return SMALL_MODEL_PROMPT.replace("WINDOW", f"{sub_window_chars:,}")


def reference_class() -> type:
    """``rlm.RLM`` with one fix for llama.cpp's server: out of iterations, rlms asks for a
    final answer as a second assistant message in a row, which that server refuses (400);
    this asks it as a user message."""
    from rlm import RLM

    class LlamaCppRLM(RLM):
        def _default_answer(self, message_history: list[dict[str, Any]], lm_handler: Any) -> str:
            ask = {
                "role": "user",
                "content": "Please provide a final answer to the user's question based on "
                "the information provided.",
            }
            return str(lm_handler.completion([*message_history, ask]))

    return LlamaCppRLM


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Answer the request with ``rlm.RLM``; errors are reported, never raised."""
    try:
        from rlm.logger import RLMLogger
        from rlm.utils.prompts import RLM_SYSTEM_PROMPT
    except ImportError as exc:
        return {
            "error": f"rlms is not installed ({exc}); install it with: uv sync (Python >= 3.11)"
        }
    start = time.perf_counter()
    logger = RLMLogger()  # in memory only: the trajectory, for the row
    rlm = reference_class()(
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
