"""CPU budgets the zygote enforces on its workers (issue 11 item 7; stdlib only).

The block's wall clock stops while a host callback is in flight, and nothing timed what a
worker's other threads do, during a block or after it. So the host gives each worker a CPU
budget (all its threads together): one per block while the block runs, and a small one from
the end of a block to the start of the next. The zygote samples the worker's CPU time a few
times a second and SIGKILLs its process group when the budget is spent; the host reports why
and starts a fresh worker. The worker cannot lift the budget: it lives in the zygote.
"""

from __future__ import annotations

import os
from typing import NamedTuple

POLL_SECONDS = 0.25
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Budget(NamedTuple):
    start: float  # the worker's CPU seconds when the budget was set
    seconds: float
    what: str  # "block" or "idle"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all its threads), or ``None`` if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


class CpuBudgets:
    """The current budget of each worker; :meth:`overspent` names the workers to kill."""

    def __init__(self) -> None:
        self.budgets: dict[int, Budget] = {}
        self.reasons: dict[int, str] = {}

    def set(self, pid: int, seconds: float, what: str) -> None:
        used = cpu_seconds(pid)
        if used is not None:
            self.budgets[pid] = Budget(used, float(seconds), what)

    def forget(self, pid: int) -> None:
        self.budgets.pop(pid, None)

    def overspent(self) -> list[int]:
        """Workers past their budget (each is forgotten, its reason kept for the host)."""
        over = []
        for pid, budget in list(self.budgets.items()):
            used = cpu_seconds(pid)
            if used is None:
                del self.budgets[pid]
            elif used - budget.start > budget.seconds:
                del self.budgets[pid]
                self.reasons[pid] = describe(budget)
                over.append(pid)
        return over

    def reason(self, pid: int) -> str | None:
        """Why worker ``pid`` was killed for CPU, once (``None`` if it was not)."""
        return self.reasons.pop(pid, None)


def describe(budget: Budget) -> str:
    if budget.what == "block":
        return (
            f"it used more than {budget.seconds:g} s of CPU during the block (all threads; "
            "time waiting on llm_query/rlm_query does not stop this clock)"
        )
    return (
        f"it used more than {budget.seconds:g} s of CPU between blocks: a thread started by an "
        "earlier block kept running after that block ended (threads must finish within their "
        "block)"
    )
