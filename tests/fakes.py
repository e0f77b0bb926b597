"""A small scripted chat model for offline tests of the RLM graph, CLI and Studio.

:class:`FakeChatModel` answers by calling ``respond(messages) -> str``: a test inspects the
prompt (helpers below say which run is asking, at what depth and turn) and returns the reply.
It reports ``usage_metadata`` in invoke and stream (about 4 chars per token), counts calls
thread-safely, and can sleep ``latency`` seconds per call to make concurrency measurable.

Ready-made models (zero-argument factories):

- :func:`answer_model` — root prints ``len(context)`` then answers with that number.
- :func:`recursive_model` — root hands the task to one child with ``rlm_query``; the child
  answers ``"child saw N chars"``; plain sub-calls answer ``"sub: <prompt start>"``.
- :func:`instant_model` — ``print(1)`` then ``Final Answer: 1`` (framework overhead).

Example::

    def respond(messages):
        if is_subcall(messages):
            return "yes"
        return ["```python\\nprint(llm_query('hi'))\\n```", "Final Answer: done"][turn(messages)]

    graph = build_graph(model=FakeChatModel(respond=respond))
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, SystemMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, PrivateAttr

Respond = Callable[[list[BaseMessage]], str]

# ---- prompt inspection helpers -----------------------------------------------------------


def text_of(message: BaseMessage) -> str:
    """Text content of a message."""
    content = message.content
    return content if isinstance(content, str) else str(content)


def is_subcall(messages: Sequence[BaseMessage]) -> bool:
    """True for a plain ``llm_query`` call (no RLM system prompt)."""
    return not (messages and isinstance(messages[0], SystemMessage))


def turn(messages: Sequence[BaseMessage]) -> int:
    """0-based turn of an RLM run: how many model replies its conversation already holds."""
    return sum(isinstance(m, AIMessage) for m in messages)


def depth(messages: Sequence[BaseMessage]) -> int | None:
    """Depth of the asking RLM run, read from its system prompt (None for a sub-call)."""
    if is_subcall(messages):
        return None
    m = re.search(r"at depth (\d+) of|at the maximum depth \((\d+)\)", text_of(messages[0]))
    return int(m.group(1) or m.group(2)) if m else None


def can_recurse(messages: Sequence[BaseMessage]) -> bool:
    """True when the run's prompt says ``rlm_query`` starts a child (not the max-depth fallback)."""
    return not is_subcall(messages) and "maximum depth" not in text_of(messages[0])


def question(messages: Sequence[BaseMessage]) -> str:
    """The question of an RLM run (from its first user message) or a sub-call's prompt."""
    if is_subcall(messages):
        return text_of(messages[-1])
    m = re.search(r"Question:\n(.*?)\n\nThe variable", text_of(messages[1]), re.DOTALL)
    return m.group(1) if m else ""


def last_text(messages: Sequence[BaseMessage]) -> str:
    """Text of the last message (the latest observation for an RLM run)."""
    return text_of(messages[-1]) if messages else ""


def code(src: str, thought: str = "run code") -> str:
    """A reply in the expected format with one python block."""
    return f"Thought: {thought}\n```python\n{src}\n```"


def final(answer: str, thought: str = "done") -> str:
    """A reply giving the final answer."""
    return f"Thought: {thought}\nFinal Answer: {answer}"


def scripted(*replies: str, sub: str | Callable[[str], str] = "ok") -> Respond:
    """Respond with ``replies[turn]`` in every RLM run; sub-calls get ``sub`` (or ``sub(prompt)``).

    Past the end of the script the last reply repeats.
    """

    def respond(messages: list[BaseMessage]) -> str:
        if is_subcall(messages):
            return sub(text_of(messages[-1])) if callable(sub) else sub
        return replies[min(turn(messages), len(replies) - 1)]

    return respond


# ---- the model -------------------------------------------------------------------------------


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class FakeChatModel(BaseChatModel):
    """Chat model whose replies come from ``respond(messages)``; reports usage; thread-safe."""

    respond: Respond
    latency: float = 0.0
    report_usage: bool = True

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _calls: int = PrivateAttr(default=0)
    _in_flight: int = PrivateAttr(default=0)
    _max_in_flight: int = PrivateAttr(default=0)
    _prompts: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _tokens: dict[str, int] = PrivateAttr(
        default_factory=lambda: {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    )

    @property
    def _llm_type(self) -> str:
        return "rlm-graph-fake"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> FakeChatModel:
        """Accept tools (for agents built on this model) and never call them."""
        return self

    @property
    def calls(self) -> int:
        """Number of calls so far."""
        with self._lock:
            return self._calls

    @property
    def max_in_flight(self) -> int:
        """Most calls that were running at the same time."""
        with self._lock:
            return self._max_in_flight

    @property
    def prompts(self) -> list[list[BaseMessage]]:
        """The messages of every call, in call order."""
        with self._lock:
            return list(self._prompts)

    @property
    def tokens(self) -> dict[str, int]:
        """Tokens reported so far, summed over calls (zeros with ``report_usage=False``)."""
        with self._lock:
            return dict(self._tokens)

    def _begin(self, messages: list[BaseMessage]) -> None:
        with self._lock:
            self._calls += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._prompts.append(list(messages))

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _usage(self, messages: list[BaseMessage], reply: str) -> UsageMetadata | None:
        if not self.report_usage:
            return None
        inp = sum(_tokens(text_of(m)) for m in messages)
        out = _tokens(reply)
        return UsageMetadata(input_tokens=inp, output_tokens=out, total_tokens=inp + out)

    def _reply(self, messages: list[BaseMessage]) -> tuple[str, UsageMetadata | None]:
        reply = self.respond(messages)
        usage = self._usage(messages, reply)
        if usage:
            with self._lock:
                for key in self._tokens:
                    self._tokens[key] += usage[key]  # type: ignore[literal-required]
        return reply, usage

    def _result(self, messages: list[BaseMessage]) -> ChatResult:
        try:
            reply, usage = self._reply(messages)
        finally:
            self._end()
        message = AIMessage(content=reply, usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._begin(messages)
        if self.latency:
            time.sleep(self.latency)
        return self._result(messages)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._begin(messages)
        if self.latency:
            await asyncio.sleep(self.latency)
        return self._result(messages)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        result = self._generate(messages, stop, run_manager, **kwargs)
        message = result.generations[0].message
        assert isinstance(message, AIMessage)
        text = text_of(message)
        pieces = [text[i : i + 16] for i in range(0, len(text), 16)] or [""]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            chunk = AIMessageChunk(
                content=piece, usage_metadata=message.usage_metadata if last else None
            )
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=ChatGenerationChunk(message=chunk))
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        result = await self._agenerate(messages, stop, None, **kwargs)
        message = result.generations[0].message
        assert isinstance(message, AIMessage)
        yield ChatGenerationChunk(
            message=AIMessageChunk(content=text_of(message), usage_metadata=message.usage_metadata)
        )


# ---- ready-made models -----------------------------------------------------------------------


def answer_model(latency: float = 0.0) -> FakeChatModel:
    """Root prints ``len(context)``, then answers with the printed number."""

    def respond(messages: list[BaseMessage]) -> str:
        if is_subcall(messages):
            return "sub: " + text_of(messages[-1])[:40]
        if turn(messages) == 0:
            return code("print(len(context))", "measure the context")
        printed = re.search(r"Observation:\n(\S+)", last_text(messages))
        return final(printed.group(1) if printed else "unknown")

    return FakeChatModel(respond=respond, latency=latency)


def recursive_model(latency: float = 0.0) -> FakeChatModel:
    """Root delegates to one child via ``rlm_query``; the child answers ``child saw N chars``."""

    def respond(messages: list[BaseMessage]) -> str:
        if is_subcall(messages):
            return "sub: " + text_of(messages[-1])[:40]
        if depth(messages) == 0:
            if turn(messages) == 0:
                return code("final_answer(rlm_query('Measure the text.', context))", "delegate")
            return final("unexpected")
        if turn(messages) == 0:
            return code("print(f'child saw {len(context)} chars')", "measure")
        printed = re.search(r"Observation:\n(.+)", last_text(messages))
        return final(printed.group(1) if printed else "unknown")

    return FakeChatModel(respond=respond, latency=latency)


def sleeping_model() -> FakeChatModel:
    """Runs a block that sleeps for two minutes (for interrupting), then answers."""
    return FakeChatModel(
        respond=scripted(code("import time\ntime.sleep(120)", "wait for a long time"), final("1"))
    )


def instant_model() -> FakeChatModel:
    """``print(1)`` on the first turn, then ``Final Answer: 1``."""
    return FakeChatModel(respond=scripted(code("print(1)"), final("1")))


__all__ = [
    "FakeChatModel",
    "answer_model",
    "can_recurse",
    "code",
    "depth",
    "final",
    "instant_model",
    "is_subcall",
    "last_text",
    "question",
    "recursive_model",
    "scripted",
    "sleeping_model",
    "text_of",
    "turn",
]
