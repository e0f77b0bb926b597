"""Sample the local model's first reply to the demo's question, greedy and at a temperature.

    RLM_LOCAL_CTX=4096 RLM_LOCAL_THREADS=2 uv run --no-sync python \\
        benchmarks/demo_first_reply.py --seeds 201,203,204 --samples 4 --temperature 0.4

For each seed, the first message the graph builds (system prompt + question + metadata) is sent
once greedily and ``--samples`` times sampled (seeds 1..N), the way a dead end is asked again
(:mod:`rlm_graph.dead_ends`). Each reply's first code block is classified: ``placeholder`` (a
``<name>`` slot of the question's format line copied into the code), ``grep``, ``none`` (no code
block), ``other``. Prints one line per reply and the counts.
"""

from __future__ import annotations

import argparse
import collections
import re

from rlm_graph import build_graph
from rlm_graph.demo import make_task
from rlm_graph.models import resolve_model
from rlm_graph.parsing import parse_reply

_SLOT = re.compile(r"<[A-Za-z_]+>")


def kind(code: str) -> str:
    """What a first block does, coarsely."""
    if not code:
        return "none"
    if _SLOT.search(code):
        return "placeholder"
    return "grep" if "grep(" in code else "other"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="201,203,204", help="demo seeds, comma-separated")
    p.add_argument("--samples", type=int, default=4, help="sampled replies per seed")
    p.add_argument("--temperature", type=float, default=0.4)
    args = p.parse_args()
    model = resolve_model("local")
    counts: collections.Counter[tuple[bool, str]] = collections.Counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        task = make_task(seed)
        # One reply: the graph stops after it; its state holds the first message it sent.
        state = build_graph(model="local", max_depth=1, max_iterations=1).invoke(
            {"query": task.question, "context": task.context}
        )
        first = state["messages"][:2]
        for k in range(args.samples + 1):
            update = {"temperature": args.temperature, "seed": k} if k else {}
            reply = model.model_copy(update=update).invoke(first)
            blocks = parse_reply(str(reply.content)).code_blocks
            code = blocks[0] if blocks else ""
            label = "greedy" if k == 0 else f"t={args.temperature:g} seed {k}"
            counts[(label == "greedy", kind(code))] += 1
            print(f"{seed} {label}: {kind(code)}: {code[:120]!r}", flush=True)
    for (greedy, what), n in sorted(counts.items()):
        print(f"{'greedy' if greedy else 'sampled'} {what}: {n}")


if __name__ == "__main__":
    main()
