"""Inbound dialects: client bytes -> canonical ChatRequest; canonical results -> client bytes."""
