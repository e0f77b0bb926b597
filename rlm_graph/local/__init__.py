"""The offline local model: packaged GGUF weights and a llama.cpp server child process.

Nothing here imports ``xllamacpp`` in the host process; the server child does.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

from rlm_graph.local.weights import INSTALL_HINT, PART_PACKAGES

__all__ = ["INSTALL_HINT", "local_extra_installed", "missing_local_packages"]


def missing_local_packages() -> list[str]:
    """Names of the ``local`` extra's packages that are not installed (empty when complete)."""
    missing = [] if importlib.util.find_spec("xllamacpp") is not None else ["xllamacpp"]
    for name in PART_PACKAGES:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def local_extra_installed() -> bool:
    """Whether the ``local`` extra (xllamacpp and all 22 weight parts) is installed."""
    return not missing_local_packages()
