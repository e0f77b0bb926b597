"""What the loop needs to know about a root model: is it small (compact prompt, short output)?

The knowledge lives in a tag on the chat model, so the graph never imports the providers for it
and users can tag their own small models.
"""

from __future__ import annotations

from typing import Any

#: Tag on a chat model that marks it as small: it gets the compact prompt and the small
#: output cap unless the settings say otherwise. ``models.py`` sets it on the ``local`` model.
SMALL_MODEL_TAG = "rlm:small-model"
#: Default ``max_output_chars`` for most models, and for small models (8k-token windows).
FULL_OUTPUT_CHARS = 20_000
SMALL_MODEL_OUTPUT_CHARS = 2_000


def is_small_model(model: Any) -> bool:
    """True when ``model`` carries :data:`SMALL_MODEL_TAG` (the ``local`` model does)."""
    return SMALL_MODEL_TAG in (getattr(model, "tags", None) or ())


def use_compact_prompt(prompt_style: str, model: Any) -> bool:
    """Whether a run with ``prompt_style`` ('auto', 'full', 'compact') on root ``model`` gets the
    compact prompt: 'auto' picks it for small models."""
    if prompt_style == "auto":
        return is_small_model(model)
    return prompt_style == "compact"


def default_output_chars(model: Any) -> int:
    """``max_output_chars`` when the settings leave it empty: small for small models."""
    return SMALL_MODEL_OUTPUT_CHARS if is_small_model(model) else FULL_OUTPUT_CHARS


#: Characters per token assumed when a window in tokens is turned into characters (text and
#: code run about 3-4; the lower figure keeps prompts inside the window).
CHARS_PER_TOKEN = 3
#: What ``llm_query`` is said to read when its model's window is unknown.
UNKNOWN_WINDOW_CHARS = 100_000


def window_tokens(model: Any) -> int | None:
    """The model's context window in tokens, from its LangChain profile (``max_input_tokens``;
    the ``local`` model reports its server's), or None when unknown."""
    profile = getattr(model, "profile", None) or {}
    value = profile.get("max_input_tokens") if isinstance(profile, dict) else None
    return int(value) if isinstance(value, int) and value > 0 else None


def readable_chars(window: int | None) -> int:
    """Characters of text one call can be given with room left for its instructions and
    answer: about two thirds of the window."""
    if window is None:
        return UNKNOWN_WINDOW_CHARS
    return max(1_000, window * CHARS_PER_TOKEN * 2 // 3)
