"""build_graph(output_schema=...): typed answers, validated on the host, with the real sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from pydantic import BaseModel
from typing_extensions import TypedDict

from rlm_graph import build_graph
from rlm_graph.answers import AnswerSchema, schema_errors
from tests.fakes import FakeChatModel, code, depth, final, last_text, scripted, text_of, turn


class City(BaseModel):
    name: str
    population: int


class Pair(TypedDict):
    word: str
    count: int


def test_pydantic_answer_valid_on_the_first_try() -> None:
    model = FakeChatModel(
        respond=scripted(code("final_answer({'name': 'Rome', 'population': 2_800_000})"))
    )
    graph = build_graph(model=model, output_schema=City)
    out = graph.invoke({"query": "biggest city?"})
    assert out["answer"] == {"name": "Rome", "population": 2800000}
    assert City.model_validate(out["answer"]).name == "Rome"
    assert out["answer_text"] == '{"name": "Rome", "population": 2800000}'
    assert out["stopped_reason"] == "final_answer" and model.calls == 1
    system = text_of(model.prompts[0][0])
    assert '"population":{"title":"Population","type":"integer"}' in system
    assert "final_answer(obj)" in system


def test_answer_valid_after_one_failed_validation() -> None:
    seen: list[str] = []

    def respond(messages: list[BaseMessage]) -> str:
        if turn(messages) == 0:
            return code("final_answer({'name': 'Rome', 'population': 'many'})")
        seen.append(last_text(messages))
        return code("final_answer({'name': 'Rome', 'population': 2800000})")

    graph = build_graph(model=FakeChatModel(respond=respond), output_schema=City)
    out = graph.invoke({"query": "q"})
    assert out["answer"] == {"name": "Rome", "population": 2800000}
    assert out["iterations"] == 2 and out["stopped_reason"] == "final_answer"
    assert "does not match the required schema" in seen[0]
    assert "population: Input should be a valid integer" in seen[0]


def test_typed_dict_from_a_final_answer_line_and_the_output_schema() -> None:
    reply = final('{"word": "beta", "count": 3}')
    graph = build_graph(model=FakeChatModel(respond=scripted(reply)), output_schema=Pair)
    out = graph.invoke({"query": "q"})
    assert out["answer"] == {"word": "beta", "count": 3}
    schema = graph.get_output_jsonschema()
    answer = schema["properties"]["answer"]
    assert "answer_text" in schema["properties"]
    ref = answer["anyOf"][0]["$ref"].rsplit("/", 1)[-1]
    assert schema["$defs"][ref]["properties"]["count"]["type"] == "integer"


JSON_SCHEMA = {
    "type": "object",
    "properties": {"total": {"type": "integer", "minimum": 0}, "unit": {"enum": ["kg", "g"]}},
    "required": ["total", "unit"],
    "additionalProperties": False,
}


def test_json_schema_and_an_invalid_forced_answer_is_marked() -> None:
    model = FakeChatModel(
        respond=scripted(
            final('{"total": -1, "unit": "lb"}'),
            final('{"total": 5}'),
            final("about five kilos"),  # the forced answer
        )
    )
    graph = build_graph(model=model, output_schema=JSON_SCHEMA, max_iterations=2)
    out = graph.invoke({"query": "q"})
    assert out["answer"] is None
    assert out["stopped_reason"] == "invalid_answer"
    assert out["answer_text"] == "about five kilos"
    observations = [text_of(p[-1]) for p in model.prompts[1:2]]
    assert "total: must be >= 0" in observations[0] and "unit: must be one of" in observations[0]
    answer = graph.get_output_jsonschema()["properties"]["answer"]
    assert answer["anyOf"][0] == JSON_SCHEMA


def test_a_valid_forced_answer_is_accepted() -> None:
    model = FakeChatModel(respond=scripted(code("print(1)"), final('{"total": 2, "unit": "g"}')))
    out = build_graph(model=model, output_schema=JSON_SCHEMA, max_iterations=1).invoke(
        {"query": "q"}
    )
    assert out["answer"] == {"total": 2, "unit": "g"}
    assert out["stopped_reason"] == "max_iterations"


def test_children_answer_in_text_under_a_typed_root() -> None:
    def respond(messages: list[BaseMessage]) -> str:
        if depth(messages) == 0:
            return code("final_answer({'name': rlm_query('name?'), 'population': 1})")
        return final("Oslo")

    graph = build_graph(model=FakeChatModel(respond=respond), output_schema=City)
    assert graph.invoke({"query": "q"})["answer"] == {"name": "Oslo", "population": 1}


def test_graph_without_schema_keeps_text_answers() -> None:
    graph = build_graph(model=FakeChatModel(respond=scripted(code("final_answer([1, 'a'])"))))
    out = graph.invoke({"query": "q"})
    assert out["answer"] == '[1, "a"]' and "answer_text" not in out
    assert graph.get_output_jsonschema()["properties"]["answer"]["type"] == "string"


@pytest.mark.parametrize(
    ("value", "schema", "expected"),
    [
        (3, {"type": "integer"}, []),
        (True, {"type": "integer"}, ["(root): must be of type integer"]),
        (
            [1, "x"],
            {"type": "array", "items": {"type": "integer"}},
            ["(root)[1]: must be of type integer"],
        ),
        ({"a": {}}, {"properties": {"a": {"required": ["b"]}}}, ["a: missing required key 'b'"]),
        (
            "x",
            {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            ["(root): matches none of the anyOf options"],
        ),
        ("abc", {"type": "string", "maxLength": 2}, ["(root): longer than 2 characters"]),
    ],
)
def test_schema_errors(value: Any, schema: dict[str, Any], expected: list[str]) -> None:
    assert schema_errors(value, schema) == expected


def test_bad_output_schema_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="output_schema: cannot build a validator"):
        AnswerSchema(object())
