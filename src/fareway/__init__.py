"""Fareway: a self-hosted, zero-markup LLM gateway."""

__version__ = "0.1.0"
