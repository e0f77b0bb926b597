"""Model providers: turn a spec string into a LangChain chat model.

Specs:

=============================  ==============================================================
``groq/<model>``               Groq (``GROQ_API_KEY``; ``GROQ_API_BASE`` overrides the URL)
``ollama/<model>``             Ollama (``OLLAMA_HOST``, default ``http://127.0.0.1:11434``)
``openai/<model>``, ``gpt-4o``  OpenAI (``OPENAI_API_KEY``; ``OPENAI_BASE_URL`` honoured)
``gemini/<model>``             Gemini's OpenAI-compatible endpoint (``GEMINI_API_KEY``)
``local``                      the packaged Qwen2.5-Coder-1.5B on a llama.cpp server
``local/<path.gguf>``          any GGUF file on the same kind of server
``package.module:attribute``   a ``BaseChatModel`` instance or a zero-argument factory
=============================  ==============================================================

Every hosted client gets ``RLM_LLM_TIMEOUT`` (default 120 s) as its per-request timeout and no
SDK retries: :mod:`rlm_graph.retry` bounds and retries calls the same way for every provider.

Spec errors (unknown provider, missing key, missing file, local extra not installed) are raised
by :func:`resolve_model` itself, before any model call. Every provider reports
``usage_metadata``, streaming included.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from rlm_graph.model_profile import SMALL_MODEL_TAG
from rlm_graph.retry import env_timeout

__all__ = [
    "DEFAULT_SPEC",
    "GEMINI_BASE_URL",
    "PROVIDERS",
    "ChatLocalLlama",
    "LocalModelUnavailableError",
    "MissingAPIKeyError",
    "ModelSpecError",
    "NoDefaultModelError",
    "UnknownProviderError",
    "default_model_spec",
    "resolve_model",
]

DEFAULT_SPEC = "groq/llama-3.3-70b-versatile"
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/v1beta/openai/"
PROVIDERS: tuple[str, ...] = ("groq", "ollama", "openai", "gemini", "local")
LOCAL_STOP = ["\nObservation:"]

# Bare names that unambiguously belong to OpenAI (gpt-4o, o3-mini, chatgpt-4o-latest, ...).
_BARE_OPENAI = re.compile(r"^(gpt-|chatgpt-|o\d)[\w.\-]*$")
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

Role = Literal["root", "sub"]


class ModelSpecError(ValueError):
    """A model spec cannot be turned into a model (raised before any call)."""


class UnknownProviderError(ModelSpecError):
    """The spec names a provider that does not exist."""


class MissingAPIKeyError(ModelSpecError):
    """The provider needs an API key that is not set."""


class LocalModelUnavailableError(ModelSpecError):
    """The local model cannot be used: extra not installed or GGUF file missing."""


class NoDefaultModelError(ModelSpecError):
    """No model spec was given and none can be chosen from the environment."""


def _require_env(var: str, provider: str) -> str:
    value = os.environ.get(var, "").strip()
    if not value:
        raise MissingAPIKeyError(
            f"{var} is not set: the {provider} provider needs it (put {var}=... in .env or the "
            "environment)"
        )
    return value


def _unknown(spec: str) -> UnknownProviderError:
    return UnknownProviderError(
        f"unknown model spec {spec!r}: use <provider>/<model> with provider one of "
        f"{', '.join(PROVIDERS)}; a bare OpenAI model name (gpt-4o, o3-mini); 'local'; "
        "or an import path package.module:attribute"
    )


def default_model_spec() -> str:
    """The model used when none is given.

    In order: ``RLM_MODEL``; ``groq/llama-3.3-70b-versatile`` if ``GROQ_API_KEY`` is set;
    ``local`` if the local extra is installed; otherwise :class:`NoDefaultModelError` with a
    one-line message saying how to get going.
    """
    spec = os.environ.get("RLM_MODEL", "").strip()
    if spec:
        return spec
    if os.environ.get("GROQ_API_KEY", "").strip():
        return DEFAULT_SPEC
    from rlm_graph.local import local_extra_installed

    if local_extra_installed():
        return "local"
    raise NoDefaultModelError(
        "no model available: set GROQ_API_KEY in .env (or RLM_MODEL / --model), or install the "
        "offline local model with `uv sync --extra local` (pip: pip install 'rlm-graph[local]')"
    )


def resolve_model(spec: str | BaseChatModel | None = None, *, role: Role = "root") -> BaseChatModel:
    """Build the chat model for ``spec`` (``None`` = :func:`default_model_spec`).

    ``role`` (``"root"`` for the RLM loop, ``"sub"`` for ``llm_query``) is added to the model's
    tags for tracing. A ``BaseChatModel`` instance is returned unchanged.
    """
    if isinstance(spec, BaseChatModel):
        return spec
    if spec is None:
        spec = default_model_spec()
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"model spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    tags = [f"rlm:{role}"]

    if spec == "local" or spec.startswith("local/"):
        return _local(spec[len("local/") :] if spec != "local" else None, tags)
    if _IMPORT_PATH.match(spec) and "/" not in spec:
        return _import_model(spec)
    provider, sep, name = spec.partition("/")
    if not sep:
        if _BARE_OPENAI.match(spec):
            return _openai(spec, tags)
        raise _unknown(spec)
    if not name:
        raise ModelSpecError(f"model spec {spec!r} names no model after {provider}/")
    if provider == "groq":
        return _groq(name, tags)
    if provider == "ollama":
        return _ollama(name, tags)
    if provider == "openai":
        return _openai(name, tags)
    if provider == "gemini":
        return _gemini(name, tags)
    raise _unknown(spec)


def _groq(name: str, tags: list[str]) -> BaseChatModel:
    from langchain_groq import ChatGroq

    key = _require_env("GROQ_API_KEY", "groq")
    # ChatGroq reads GROQ_API_BASE itself; it reports usage when streaming without options.
    # Retries: rlm_graph.retry (backoff honouring retry-after); the SDK's own are too short.
    return ChatGroq(
        model=name,
        api_key=key,  # type: ignore[arg-type]
        temperature=0,
        max_retries=0,
        timeout=env_timeout(),
        tags=tags,
    )


def _ollama(name: str, tags: list[str]) -> BaseChatModel:
    from langchain_ollama import ChatOllama

    host = os.environ.get("OLLAMA_HOST", "").strip() or "http://127.0.0.1:11434"
    if "://" not in host:
        host = "http://" + host
    # The Ollama client has no timeout of its own: a hung server would hang the run.
    return ChatOllama(
        model=name,
        base_url=host,
        temperature=0,
        tags=tags,
        client_kwargs={"timeout": env_timeout()},
    )


def _openai_compatible(name: str, *, api_key: str, base_url: str | None, tags: list[str]) -> Any:
    # stream_usage: with a custom base_url ChatOpenAI otherwise drops usage when streaming.
    return ChatOpenAI(
        model=name,
        api_key=api_key,  # type: ignore[arg-type]
        base_url=base_url,
        stream_usage=True,
        max_retries=0,  # rlm_graph.retry retries, honouring retry-after
        timeout=env_timeout(),
        tags=tags,
    )


def _openai(name: str, tags: list[str]) -> BaseChatModel:
    key = _require_env("OPENAI_API_KEY", "openai")
    base = os.environ.get("OPENAI_BASE_URL", "").strip() or None
    model: BaseChatModel = _openai_compatible(name, api_key=key, base_url=base, tags=tags)
    return model


def _gemini(name: str, tags: list[str]) -> BaseChatModel:
    key = _require_env("GEMINI_API_KEY", "gemini")
    base = os.environ.get("GEMINI_BASE_URL", "").strip() or GEMINI_BASE_URL
    model: BaseChatModel = _openai_compatible(name, api_key=key, base_url=base, tags=tags)
    return model


def _import_model(spec: str) -> BaseChatModel:
    module_name, _, attr_path = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelSpecError(
            f"cannot import module {module_name!r} of model spec {spec!r}: {exc}"
        ) from exc
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise ModelSpecError(f"{module_name!r} has no attribute {attr_path!r}") from None
    if isinstance(obj, BaseChatModel):
        return obj
    if callable(obj):
        try:
            made = obj()
        except Exception as exc:  # e.g. a model class whose pydantic fields are missing
            lines = str(exc).strip().splitlines()
            raise ModelSpecError(
                f"model factory {spec} failed: {type(exc).__name__}: "
                f"{lines[0] if lines else 'no message'} (it must take no arguments and return "
                "a BaseChatModel)"
            ) from exc
        if isinstance(made, BaseChatModel):
            return made
        raise ModelSpecError(
            f"{spec} returned {type(made).__name__}, not a LangChain BaseChatModel"
        )
    raise ModelSpecError(
        f"{spec} is a {type(obj).__name__}: expected a BaseChatModel or a zero-argument factory"
    )


# --- local ------------------------------------------------------------------------------------


class ChatLocalLlama(ChatOpenAI):
    """ChatOpenAI talking to this process's llama.cpp server, started on first call.

    ``model_path`` ``None`` means the packaged Qwen2.5-Coder-1.5B (joined and verified on first
    use). The server's address is only known once it runs, so the client's base URL is set
    then; every call goes through the real OpenAI HTTP client path.
    """

    model_path: str | None = None
    local_settings: Any = None

    def _ensure_server(self) -> None:
        from rlm_graph.local.server import LocalSettings, get_server
        from rlm_graph.local.weights import ensure_packaged_weights

        path = Path(self.model_path) if self.model_path else ensure_packaged_weights()
        settings = self.local_settings or LocalSettings.from_env()
        url = get_server(path, settings).ensure_started() + "/v1"
        if self.openai_api_base != url:
            self.openai_api_base = url
            for client in (self.root_client, self.root_async_client):
                if client is not None:
                    client.base_url = url

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        self._ensure_server()
        return super()._generate(*args, **kwargs)

    def _stream(self, *args: Any, **kwargs: Any) -> Any:
        self._ensure_server()
        yield from super()._stream(*args, **kwargs)

    async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
        import asyncio

        # Starting may take seconds (model load, first-time weight assembly): off the loop.
        await asyncio.to_thread(self._ensure_server)
        return await super()._agenerate(*args, **kwargs)

    async def _astream(self, *args: Any, **kwargs: Any) -> Any:
        import asyncio

        await asyncio.to_thread(self._ensure_server)
        async for chunk in super()._astream(*args, **kwargs):
            yield chunk


def _local(path: str | None, tags: list[str]) -> BaseChatModel:
    from rlm_graph.local import INSTALL_HINT, missing_local_packages
    from rlm_graph.local.server import LocalSettings

    if path is None:
        missing = missing_local_packages()
        if missing:
            raise LocalModelUnavailableError(
                f"the local model is not installed (missing {', '.join(missing[:3])}"
                f"{', ...' if len(missing) > 3 else ''}); install it with: {INSTALL_HINT}"
            )
        name = "qwen2.5-coder-1.5b-instruct"
    else:
        from importlib.util import find_spec

        if find_spec("xllamacpp") is None:
            raise LocalModelUnavailableError(
                f"serving a GGUF file needs xllamacpp; install it with: {INSTALL_HINT}"
            )
        gguf = Path(path).expanduser()
        if not gguf.is_file():
            raise LocalModelUnavailableError(f"GGUF model file not found: {gguf}")
        path = str(gguf.resolve())
        name = gguf.stem
    settings = LocalSettings.from_env()
    model: BaseChatModel = ChatLocalLlama(
        model=name,
        model_path=path,
        local_settings=settings,
        # Placeholder until the server runs; replaced by its real address on first call.
        base_url="http://127.0.0.1:9/v1",
        api_key="local",  # type: ignore[arg-type]
        stream_usage=True,
        temperature=0,
        max_completion_tokens=settings.max_tokens,  # llama.cpp's server honours this cap
        stop_sequences=list(LOCAL_STOP),
        # With the cache, temperature-0 output also depends on the previous request (see
        # LocalSettings.cache_prompt); RLM_LOCAL_CACHE_PROMPT=0 makes each call stand alone.
        extra_body={"cache_prompt": settings.cache_prompt},
        timeout=settings.timeout,
        max_retries=1,
        # Small model: the graph gives it the compact prompt and 2,000-char observations.
        tags=[*tags, SMALL_MODEL_TAG],
        # Each of the server's parallel sequences gets ctx/parallel tokens: what one call reads.
        profile={
            "max_input_tokens": settings.ctx // max(1, settings.parallel),
            "max_output_tokens": settings.max_tokens,
        },
    )
    return model
