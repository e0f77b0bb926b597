"""Typed answers: ``build_graph(output_schema=...)`` with a Pydantic model, a TypedDict (or any
type pydantic can validate) or a JSON schema dict.

The model finishes with ``final_answer(obj)`` (the sandbox sends dicts and lists as JSON) or a
``Final Answer:`` line holding JSON. :meth:`AnswerSchema.check` parses and validates that text;
on failure the loop shows the errors as the next observation. The validated value is kept in
JSON form (a dict for a model: ``Model.model_validate(out["answer"])`` gives the instance), so
any checkpointer can store it. A JSON schema dict is checked by :func:`schema_errors`, a small
validator of the common keywords (``type``, ``properties``, ``required``,
``additionalProperties``, ``items``, ``enum``, ``const``, ``anyOf``/``oneOf``, bounds, lengths).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError, WithJsonSchema

_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.S)
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}
MAX_ERRORS = 10


@dataclass(frozen=True)
class Checked:
    """An answer checked against the schema: ``value`` when valid, else ``errors``."""

    text: str
    value: Any = None
    errors: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the answer matched the schema."""
        return self.errors is None


class AnswerSchema:
    """What answers of one graph must look like, and how to check them."""

    def __init__(self, schema: Any) -> None:
        if isinstance(schema, Mapping):
            self.json_schema: dict[str, Any] = dict(schema)
            self.adapter: TypeAdapter[Any] | None = None
            self.annotation: Any = Annotated[Any, WithJsonSchema(self.json_schema)]
            return
        try:
            self.adapter = TypeAdapter(schema)
            self.json_schema = self.adapter.json_schema()
        except Exception as exc:  # pydantic raises several kinds for unsupported types
            raise ValueError(
                f"output_schema: cannot build a validator for {schema!r} ({exc}); pass a "
                "Pydantic model, a typing_extensions.TypedDict or a JSON schema dict"
            ) from None
        self.annotation = schema

    def prompt_text(self) -> str:
        """The schema as compact JSON, for the system prompt."""
        return json.dumps(self.json_schema, separators=(",", ":"), ensure_ascii=False)

    def check(self, text: str) -> Checked:
        """Parse ``text`` (JSON, else the text itself) and validate it."""
        text = text.strip()
        fenced = _FENCE.match(text)
        body = fenced.group(1).strip() if fenced else text
        candidates: list[Any] = []
        try:
            candidates.append(json.loads(body))
        except ValueError:
            pass
        candidates.append(body)  # a plain string answer to a string schema
        first_errors = None
        for candidate in candidates:
            value, errors = self._validate(candidate)
            if errors is None:
                return Checked(text=text, value=value)
            first_errors = first_errors or errors
        return Checked(text=text, errors=first_errors)

    def _validate(self, candidate: Any) -> tuple[Any, str | None]:
        if self.adapter is None:
            errors = schema_errors(candidate, self.json_schema)
            return candidate, ("\n".join(errors[:MAX_ERRORS]) if errors else None)
        try:
            value = self.adapter.validate_python(candidate)
        except ValidationError as exc:
            lines = [
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                for e in exc.errors()[:MAX_ERRORS]
            ]
            return None, "\n".join(lines)
        return self.adapter.dump_python(value, mode="json"), None


def schema_errors(value: Any, schema: Mapping[str, Any], path: str = "(root)") -> list[str]:
    """What is wrong with ``value`` under the JSON schema ``schema`` (empty when valid)."""
    errors: list[str] = []
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            if not any(not schema_errors(value, o, path) for o in options):
                errors.append(f"{path}: matches none of the {key} options")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: must be one of {schema['enum']!r}")
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(value, str(k)) for k in kinds):
            return [*errors, f"{path}: must be of type {'/'.join(map(str, kinds))}"]
    if isinstance(value, dict):
        errors += _object_errors(value, schema, path)
    elif isinstance(value, list):
        errors += _array_errors(value, schema, path)
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']} characters")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: must be <= {schema['maximum']}")
    return errors


def _is_type(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPES.get(kind, (object,)))


def _object_errors(value: dict[str, Any], schema: Mapping[str, Any], path: str) -> list[str]:
    errors = [
        f"{path}: missing required key {k!r}" for k in schema.get("required", ()) if k not in value
    ]
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        where = f"{path}.{key}" if path != "(root)" else str(key)
        if key in props:
            errors += schema_errors(item, props[key], where)
        elif extra is False:
            errors.append(f"{path}: unexpected key {key!r}")
        elif isinstance(extra, Mapping):
            errors += schema_errors(item, extra, where)
    return errors


def _array_errors(value: list[Any], schema: Mapping[str, Any], path: str) -> list[str]:
    errors: list[str] = []
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{path}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    items = schema.get("items")
    if isinstance(items, Mapping):
        for i, item in enumerate(value):
            errors += schema_errors(item, items, f"{path}[{i}]")
    return errors


def accept(schema: AnswerSchema | None, update: dict[str, Any]) -> dict[str, Any]:
    """``update`` (holding a text ``answer``) with the answer checked: a valid one becomes the
    validated value (its text kept as ``answer_text``); an invalid one is withdrawn, leaving
    ``answer_errors`` for the next observation."""
    text = str(update["answer"])
    if schema is None:
        return {**update, "answer_text": text}
    checked = schema.check(text)
    if checked.ok:
        return {**update, "answer": checked.value, "answer_text": checked.text}
    rest = {k: v for k, v in update.items() if k not in ("answer", "stopped_reason")}
    return {**rest, "answer_errors": checked.errors}


def invalid_answer_message(errors: str, iteration: int, max_iterations: int) -> str:
    """The observation after an answer that did not match the schema."""
    left = max_iterations - iteration
    return (
        "Your answer does not match the required schema, so it was not accepted:\n"
        f"{errors}\nFix it and call final_answer(obj) again.\n\n"
        f"({left} repl{'y' if left == 1 else 'ies'} left)"
    )


__all__ = ["AnswerSchema", "Checked", "accept", "invalid_answer_message", "schema_errors"]
