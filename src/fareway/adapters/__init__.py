"""Outbound adapters: canonical ChatRequest -> upstream HTTP; upstream bytes -> canonical."""
