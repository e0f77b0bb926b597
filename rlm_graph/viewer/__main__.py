"""``python -m rlm_graph.viewer TRACE [-o FILE.html] [--open]``."""

from __future__ import annotations

import sys

from rlm_graph.viewer.cli import main

sys.exit(main())
