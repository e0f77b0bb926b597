"""Which chat model serves a run: the root model and the sub-model, each resolved once."""

from __future__ import annotations

import threading
from typing import Literal

from langchain_core.language_models import BaseChatModel

from rlm_graph.context import Context
from rlm_graph.model_profile import readable_chars, window_tokens


class ModelChoice:
    """Resolves model specs once each; instances given to build_graph win when the spec is None."""

    def __init__(self, model: BaseChatModel | None, sub_model: BaseChatModel | None) -> None:
        self.model, self.sub_model = model, sub_model
        self._cache: dict[tuple[str | None, str], BaseChatModel] = {}
        self._lock = threading.Lock()

    def _resolve(self, spec: str | None, role: Literal["root", "sub"]) -> BaseChatModel:
        with self._lock:
            if (spec, role) not in self._cache:
                from rlm_graph.models import resolve_model  # lazy: provider SDKs are heavy

                self._cache[(spec, role)] = resolve_model(spec, role=role)
            return self._cache[(spec, role)]

    def root(self, ctx: Context) -> BaseChatModel:
        """The root model of a run with settings ``ctx``."""
        if ctx.model:
            return self._resolve(ctx.model, "root")
        return self.model or self._resolve(None, "root")  # None: models.default_model_spec()

    def sub(self, ctx: Context) -> BaseChatModel:
        """The model behind ``llm_query`` (the root model unless one is set)."""
        if ctx.sub_model:
            return self._resolve(ctx.sub_model, "sub")
        return self.sub_model or self.root(ctx)

    def sub_chars(self, ctx: Context) -> int:
        """Characters ``llm_query`` can be given: from the sub-model's window, else the
        ``window_tokens`` setting, else a generous default."""
        return readable_chars(window_tokens(self.sub(ctx)) or ctx.window_tokens)
