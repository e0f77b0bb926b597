"""Model-written text made safe for a terminal.

Thoughts, code, outputs, prompts and answers come from the model or from code it wrote, so they
may hold terminal control sequences: ``ESC [ 2 J`` clears the screen, ``ESC ] 0 ;`` sets the
window title, ``ESC ] 8 ;`` makes a hidden link, and bidirectional overrides reorder what is
shown. :func:`safe_text` turns every such character into a visible escape (``\\x1b``), so the
text reads the same and the terminal interprets none of it. :func:`markup_safe` additionally
escapes rich markup (``[bold red]``, ``[link=...]``) for text put inside a rich markup string.
"""

from __future__ import annotations

import re

from rich.markup import escape

__all__ = ["markup_safe", "safe_quoted", "safe_text"]

# C0 controls except tab and newline, DEL, C1 controls (0x9b is a one-byte CSI), lone
# surrogates (unprintable: encoding them raises), and the bidirectional embeddings, overrides
# and isolates ("Trojan Source"), plus the line/paragraph separators some terminals honour.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
    "\u2066-\u2069]"
)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: object, *, keep_newlines: bool = True) -> str:
    """``text`` with every terminal control character shown as an escape (``\\x1b``).

    Tabs are kept, and newlines unless ``keep_newlines`` is false (then shown as ``\\n``).
    """
    out = _UNSAFE.sub(_visible, str(text if text is not None else ""))
    return out if keep_newlines else out.replace("\n", "\\n")


def markup_safe(text: object) -> str:
    """:func:`safe_text` with rich markup escaped: for model text inside a markup string."""
    return escape(safe_text(text))


def safe_quoted(text: object) -> str:
    """``repr``-style quoting of model text inside a markup string: the quotes are added first
    and the markup escaped last (escaping first and quoting after doubles rich's backslash,
    which re-enables the markup)."""
    return escape(safe_text(repr(str(text if text is not None else ""))))
