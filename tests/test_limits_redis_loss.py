"""A budget on Redis survives Redis losing its data (a restart without persistence, an eviction):
the next reservation finds the budget's spend gone, seeds it again from the ledger and only then
admits, so the budget does not start over from 0 (before, the gateway counted from 0 until it
restarted, and a budget could be spent again in full)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
import redis

from tests.conftest import openai_client, start_gateway
from tests.test_limits_e2e import MAX_TOKENS, MODEL, PROMPT, _one_call_cost, admin_api, config
from tests.test_scale_instances import own_redis

__all__ = ["own_redis"]  # the fixture


@pytest.mark.redis
async def test_a_budget_is_seeded_again_when_redis_lost_it(
    sim: Any, tmp_path: Path, own_redis: dict[str, Any]
) -> None:
    gw = await start_gateway(config(sim, tmp_path, store="redis", redis_url=own_redis["url"]))
    try:
        one = await _one_call_cost(gw)
        budget = one * Decimal("4.5")  # four calls of this cost fit, a fifth does not
        key = await admin_api(gw, "POST", "/v1/admin/keys", {"name": "b", "budget_total_usd": str(budget)})
        client = openai_client(gw.url + "/v1", key["key"])
        spent = Decimal(0)

        async def until_refused(most: int) -> int:
            nonlocal spent
            admitted = 0
            for _ in range(most):
                try:
                    raw = await client.chat.completions.with_raw_response.create(
                        model=MODEL, messages=PROMPT, max_tokens=MAX_TOKENS
                    )
                except openai.APIStatusError as exc:
                    assert exc.status_code == 402, exc.message
                    break
                spent += Decimal(raw.headers["x-fareway-cost-usd"])
                admitted += 1
            return admitted

        assert await until_refused(2) == 2
        ledger = gw.app.gateway.accounting.ledger
        assert ledger is not None
        await ledger.flush()  # the two calls are in the ledger
        with redis.Redis.from_url(own_redis["url"]) as r:
            r.flushall()  # Redis lost everything (as a restart without persistence does)
        later = await until_refused(10)
        assert later == 2, later  # 2 more fit, not 4 (the budget did not start over)
        assert spent <= budget, (spent, budget)
    finally:
        await gw.stop()
