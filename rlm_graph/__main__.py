"""``python -m rlm_graph`` runs the ``rlm-graph`` command."""

import sys

from rlm_graph.cli import main

if __name__ == "__main__":
    sys.exit(main())
