"""``python -m benchmarks.longctx``."""

import sys

from benchmarks.longctx.cli import main

sys.exit(main())
