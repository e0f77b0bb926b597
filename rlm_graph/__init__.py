"""rlm-graph: Recursive Language Models as a LangGraph workflow."""

__version__ = "0.1.0"
