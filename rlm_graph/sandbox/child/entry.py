"""Sandbox entry point, executed by path: ``python -I -S child/entry.py --ctl-fd N ...``.

Stdlib only; never imports ``rlm_graph`` (whose ``__init__`` may pull in LangGraph). The process
it starts is the zygote (see ``zygote.py``); workers are forked from it.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import zygote  # noqa: E402

if __name__ == "__main__":
    zygote.main()
