"""A tracing run (LangSmith span) per code block, so its sub-calls nest under it.

Each block becomes a ``"tool"`` run named ``code block`` under the ``execute`` node's run: the
code as input, the output, error and timings as output. While the block runs, the config
context variable holds a child config whose callbacks are that run's children; the sandbox's
handler threads copy the calling thread's contextvars, so ``llm_query`` calls and child RLM runs
started from the block (``get_config()`` in ``host_functions``) are traced under the block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from langchain_core.runnables.config import (
    get_callback_manager_for_config,
    patch_config,
    var_child_runnable_config,
)

__all__ = ["BLOCK_RUN_NAME", "block_span"]

BLOCK_RUN_NAME = "code block"


def _outputs(outcome: Any) -> dict[str, Any]:
    keys = ("output", "output_chars", "error", "final_answer", "timed_out", "restarted", "seconds")
    return {k: getattr(outcome, k, None) for k in keys}


class BlockSpan:
    """The open run of one block; :meth:`end` records its outcome."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def end(self, outcome: Any) -> None:
        """Close the run with the block's outcome (an error in the code is still an output)."""
        if self.manager is not None:
            self.manager.on_tool_end(_outputs(outcome))


@contextlib.contextmanager
def block_span(code: str) -> Iterator[BlockSpan]:
    """Open a ``tool`` run for ``code`` under the current node's run and make it the parent
    of everything started inside the ``with`` (threads that copy contextvars included).
    Without a runnable config (an executor used on its own) nothing is traced."""
    config = var_child_runnable_config.get()
    if config is None:
        yield BlockSpan(None)
        return
    manager = get_callback_manager_for_config(config).on_tool_start(
        {"name": BLOCK_RUN_NAME},
        code,
        name=BLOCK_RUN_NAME,
        inputs={"code": code},
    )
    token = var_child_runnable_config.set(patch_config(config, callbacks=manager.get_child()))
    try:
        yield BlockSpan(manager)
    except BaseException as exc:
        manager.on_tool_error(exc)
        raise
    finally:
        var_child_runnable_config.reset(token)
