"""Long-context suite for rlm-graph (issue 12, section 1).

Families (seeded generators written from the public task definitions, 8k to 8M characters):
RULER single needle, multi-key and multi-value needles, variable tracking; OOLONG-synth-style
aggregation and OOLONG-Pairs-style pairs; questions over real installed Python source with
gold answers from :mod:`ast`. Systems: the RLM graph, the bare model (input cut to its
window) and the reference ``rlms``. Run ``python -m benchmarks.longctx --help``.

Public API: :func:`benchmarks.longctx.families.make_task`,
:func:`benchmarks.longctx.families.score_task`, :func:`benchmarks.longctx.runner.run_suite`,
:class:`benchmarks.longctx.tasks.Task`.
"""
