"""What the host accepts from a worker: frames decoded on a memory budget, messages checked
against their schema before anything uses them (issue 11 item 5).

The worker runs untrusted code, which can write any bytes on the protocol fd. So a frame is
refused (and the worker replaced) when it would decode to much more memory than it takes
(``[]`` repeated decodes to about 26x its size), nests deeper than the decoder can follow,
or is not one of the messages below. Strings are cleaned of lone surrogates, which are valid
JSON but cannot be printed or encoded as UTF-8.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .child.frames import BadFrame

#: A frame may decode to at most this multiple of its size, plus ``DECODE_SLACK`` bytes.
DECODE_FACTOR = 8
DECODE_SLACK = 16 << 20
# Upper estimates of what one decoded value costs beyond its text: a container (list or dict
# object and the pointer to it) and an item (a pointer, and a small object).
CONTAINER_COST = 128
ITEM_COST = 64

# A JSON string once escaped backslashes and quotes are removed from it (see ``_skeleton``).
_PLAIN_STRING = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b"[{,:")))
_SURROGATE = re.compile("[\ud800-\udfff]")


def decoded_size(body: bytes) -> int:
    """An upper estimate of the memory ``json.loads(body)`` takes, computed without decoding.

    Counts the containers and separators outside strings. The first count includes those in
    strings too (an overestimate, cheap: ``bytes.count``); only when that would refuse the
    frame are the strings cut out first.
    """
    text = len(body) if body.isascii() else 4 * len(body)  # a str takes up to 4 bytes a char
    quick = text + _structure_cost(body)
    if quick <= _limit(body):
        return quick
    return text + _structure_cost(_skeleton(body))


def _structure_cost(data: bytes) -> int:
    marks = data.translate(None, _NOT_STRUCTURE)  # one pass; faster than four counts
    containers = marks.count(b"[") + marks.count(b"{")
    items = marks.count(b",") + marks.count(b":") + 1
    return CONTAINER_COST * containers + ITEM_COST * items


def _skeleton(body: bytes) -> bytes:
    """``body`` without the contents of its strings.

    In JSON a backslash appears only inside strings, as an escape read left to right, so
    removing ``\\\\`` pairs and then ``\\"`` leaves exactly the unescaped quotes.
    """
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return _PLAIN_STRING.sub(b'""', plain)


def _limit(body: bytes) -> int:
    return DECODE_FACTOR * len(body) + DECODE_SLACK


def decode(body: bytes) -> Any:
    """Decode one frame body, or raise :class:`BadFrame` saying why it is refused."""
    return decode_sized(body)[0]


def decode_sized(body: bytes) -> tuple[Any, int]:
    """:func:`decode`, and the estimated decoded size it was checked against."""
    estimate = decoded_size(body)
    if estimate > _limit(body):
        raise BadFrame(
            f"the worker sent a frame of {len(body):,} bytes whose decoded size would be about "
            f"{estimate:,} bytes (over {DECODE_FACTOR}x its size)"
        )
    try:
        return json.loads(body.decode("utf-8")), estimate
    except RecursionError:
        raise BadFrame("the worker sent a frame nested too deeply to decode") from None
    except ValueError as exc:
        raise BadFrame(f"the worker sent a malformed frame ({exc})") from None


def check_message(msg: Any) -> dict[str, Any]:
    """``msg`` if it is a message a worker may send (strings cleaned), else :class:`BadFrame`.

    ``{"op": "ready", "pid": int}``, ``{"op": "call", "id": int, "name": str, "args": list}``
    and ``{"op": "done", "error": str | None, "final_answer": str | None}``.
    """
    if not isinstance(msg, dict):
        raise BadFrame(f"the worker sent a {type(msg).__name__} where a message object belongs")
    op = msg.get("op")
    if op == "call":
        _require(msg, "id", int)
        _require(msg, "name", str)
        _require(msg, "args", list)
    elif op == "done":
        _require(msg, "error", (str, type(None)))
        _require(msg, "final_answer", (str, type(None)))
    elif op == "ready":
        _require(msg, "pid", int)
    else:
        raise BadFrame(f"the worker sent a message with unknown op {str(op)[:40]!r}")
    cleaned: dict[str, Any] = clean_strings(msg)
    return cleaned


def _require(msg: dict[str, Any], key: str, types: type | tuple[type, ...]) -> None:
    value = msg.get(key)
    if not isinstance(value, types) or isinstance(value, bool):
        raise BadFrame(
            f"the worker sent a {msg.get('op')!r} message whose {key!r} is "
            f"{type(value).__name__}, not {_names(types)}"
        )


def _names(types: type | tuple[type, ...]) -> str:
    group = types if isinstance(types, tuple) else (types,)
    return " or ".join("None" if t is type(None) else t.__name__ for t in group)


def clean_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (pairs become the character they encode)."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_strings(value: Any) -> Any:
    """``value`` with every string in it (keys too) passed through :func:`clean_text`.

    Iterative, so a value nested as deeply as the decoder allows cannot overflow the stack.
    """
    root = [value]
    todo: list[tuple[Any, Any]] = [(root, 0)]
    while todo:
        parent, key = todo.pop()
        item = parent[key]
        if isinstance(item, str):
            parent[key] = clean_text(item)
        elif isinstance(item, list):
            todo.extend((item, i) for i in range(len(item)))
        elif isinstance(item, dict):
            if any(isinstance(k, str) and not k.isascii() for k in item):
                item = parent[key] = {clean_text(k): v for k, v in item.items()}
            todo.extend((item, k) for k in item)
    return root[0]
