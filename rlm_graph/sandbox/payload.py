"""Write the run's payload to a file the zygote loads once."""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from .errors import PayloadError

ACCEPTED = "str, list, dict, int, float, bool, None (nested lists/dicts of these)"
SLICE_CHARS = 8 << 20

PayloadKind = Literal["str", "json"]


def write_payload(value: Any, path: str) -> PayloadKind:
    """Write ``value`` to ``path``; returns how the zygote must read it back.

    A ``str`` is written as UTF-8 in slices so the host never holds a second full copy (lone
    surrogates become ``?``); JSON-like
    values are written as JSON. Anything else raises :class:`PayloadError`.
    """
    if isinstance(value, str):
        with open(path, "wb") as f:
            for start in range(0, len(value), SLICE_CHARS):
                f.write(value[start : start + SLICE_CHARS].encode("utf-8", "replace"))
        return "str"
    if value is not None and not isinstance(value, (list, dict, int, float, bool)):
        raise PayloadError(_refusal(value))
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(value, f, ensure_ascii=False, default=_reject)
    except ValueError as exc:
        raise PayloadError(
            f"payload cannot be stored as JSON ({exc}); accepted: {ACCEPTED}"
        ) from None
    return "json"


def _reject(value: Any) -> Any:
    raise PayloadError(_refusal(value))


def _refusal(value: Any) -> str:
    return f"unsupported payload type {type(value).__name__!r}; accepted types: {ACCEPTED}"


def remove_quietly(path: str) -> None:
    """Delete ``path`` if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
