"""Budgets and rate limits: reserve before the call, settle after (see limits.store)."""
