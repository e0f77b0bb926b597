"""A regular expression of the model's block that matched nothing is fitted to the data after
the search failed (rlm_graph.probes): the observation shows the longest start of it that
matches, what it matched, the text the rest of the pattern failed on, and the pattern with that
text bridged when the rest matches further on in the line. Scripted models, the
real sandbox; the probe's own code is also run here on texts a test builds."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from rlm_graph import build_graph, probes
from tests.fakes import FakeChatModel, code, final, last_text, turn

CONTEXT = "k blue-fox code 4417\nk red-owl code 1200\nk blue-fox again\n"


def _observation(block: str, context: str = CONTEXT) -> str:
    seen: list[list[BaseMessage]] = []

    def respond(messages: list[BaseMessage]) -> str:
        seen.append(list(messages))
        return [code(block), final("4417")][min(turn(messages), 1)]

    model = FakeChatModel(respond=respond)
    query = "What is the code of key blue-fox?"
    build_graph(model=model).invoke({"query": query, "context": context})
    return last_text(seen[1])


def _fit(block: str, context: Any, capsys: pytest.CaptureFixture[str]) -> str:
    probe = probes.probe_code(block)
    assert probe is not None
    scope = {"context": context}
    exec(probe, scope)  # the sandbox runs it so
    assert set(scope) == {"context", "__builtins__"}  # it leaves no name behind
    return capsys.readouterr().out


def test_a_failed_pattern_is_shown_where_it_stops_matching() -> None:
    block = "import re\nprint(re.findall(r'blue-fox\\s*(\\d+)', context))"
    observation = _observation(block)
    assert (
        "Your pattern r'blue-fox\\s*(\\d+)' matches nothing. Its start r'blue-fox\\s*' matches "
        "2 times, e.g. 'blue-fox ', and there the text goes on 'code 4417\\n', which the rest, "
        "r'(\\d+)', does not fit. A pattern that fits: r'blue-fox\\s*code (\\d+)' "
        "(it matches once)."
    ) in observation
    # The words of a fitted pattern are not looked up again.
    assert "occur in context" not in observation


def test_grep_ignores_case_unless_told_not_to(capsys: pytest.CaptureFixture[str]) -> None:
    shown = _fit("grep('Blue-Fox code 9')", CONTEXT, capsys)
    assert "Its start r'Blue-Fox code ' matches once, e.g. 'blue-fox code '" in shown
    shown = _fit("grep('Blue-Fox code 9', ignore_case=False)", CONTEXT, capsys)
    assert "Your pattern" not in shown and "'Blue' 0 times" in shown


def test_a_pattern_that_matches_or_has_no_matching_start_is_not_fitted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Matches only with the block's own re.I flag: it found something, so it is not fitted.
    shown = _fit(
        "import re\nre.findall(r'K BLUE-FOX (\\w+)', context, re.I)\nprint(0)", CONTEXT, capsys
    )
    assert "Your pattern" not in shown
    shown = _fit("import re\nprint(re.search(r'zebra crossing', context))", CONTEXT, capsys)
    assert "Your pattern" not in shown and "'zebra' 0 times" in shown
    # Only its first letter matches: too short a start to say anything.
    shown = _fit("import re\nprint(re.search(r'kite string', context))", CONTEXT, capsys)
    assert "Your pattern" not in shown and "'kite' 0 times" in shown
    # An invalid pattern, and a context that is not text.
    assert "Your pattern" not in _fit(
        "import re\nre.findall(r'blue(fox', context)", CONTEXT, capsys
    )
    assert _fit("import re\nre.findall(r'blue-foxes', context)", [CONTEXT], capsys) == ""


def test_a_start_cut_inside_a_group_or_an_escape(capsys: pytest.CaptureFixture[str]) -> None:
    shown = _fit("import re\nre.findall(r'(?:blue|red)-fox: (\\d+)', context)", CONTEXT, capsys)
    assert "Its start r'(?:blue|red)-fox' matches 2 times" in shown
    assert "the rest, r': (\\d+)'" in shown
    shown = _fit(
        "import re\nre.findall(r'(blue-fox code \\d\\d\\d\\d\\d)', context)", CONTEXT, capsys
    )
    assert "Its start r'(blue-fox code \\d\\d\\d\\d' matches once, e.g. 'blue-fox code 4417'" in (
        shown
    )


def test_the_text_after_the_start_stops_at_the_line_end_or_a_length(
    capsys: pytest.CaptureFixture[str],
) -> None:
    long_line = "key: " + "x" * 500
    shown = _fit("import re\nre.findall(r'key: (\\d+)', context)", long_line, capsys)
    assert f"the text goes on {'x' * probes.AFTER!r}, which" in shown


def test_which_literals_are_patterns() -> None:
    block = (
        "import re\n"
        "x = 'plain string'\n"
        "re.sub(r'a+', 'I', s)\n"  # the replacement is not a flag
        "rx = re.compile(r'b+', flags=re.IGNORECASE)\n"
        "grep(f'{name}')\n"  # not a literal
        "grep('c+')\n"
    )
    assert probes.patterns_of(block) == [("a+", False), ("b+", True)]
    assert probes.patterns_of("re.findall(r'q', s, re.I); grep('c', ignore_case=False)") == [
        ("q", True),
        ("c", False),
    ]
    # A name the block assigns a literal to (the last assignment), in the order of the calls.
    named = "p = 'z+'\np = r'(\\d+)'\nm = re.search(p, s)\nn = re.search(q, s)\ngrep('y')"
    assert probes.patterns_of(named) == [("(\\d+)", False), ("y", True)]
    assert probes.patterns_of("print('unclosed") == []
    assert probes.patterns_of("x.search('a'); re.escape('b'); re.search(p, s)") == []


def test_the_bridged_pattern_escapes_the_text_it_takes(capsys: pytest.CaptureFixture[str]) -> None:
    text = "id (a.b) = 42\nid (c) = 7\n"
    shown = _fit("import re\nre.findall(r'id\\s*= (\\d+)', context)", text, capsys)
    assert "A pattern that fits: r'id\\s*\\(a\\.b\\) = (\\d+)' (it matches once)." in shown
    # The rest matches nowhere after the start: no pattern is made up.
    shown = _fit("import re\nre.findall(r'id\\s*: (\\d+)', context)", text, capsys)
    assert "does not fit. Change the pattern to fit the text." in shown
