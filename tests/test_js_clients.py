"""Node clients against a live Fareway: the Vercel AI SDK with its default OpenAI provider
(``openai(model)`` speaks the Responses API): ``generateText``, ``streamText``, one tool call
each way (tests/js/responses.mjs).

The packages are installed from the project's own tests/js/package.json and package-lock.json
with ``npm ci`` (node_modules is not committed).  Skipped, saying why, only when node or npm is
not installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import MASTER_KEY, LiveGateway

JS = Path(__file__).resolve().parent / "js"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are needed to run the Vercel AI SDK client (tests/js); install Node.js 20+",
)


@pytest.fixture(scope="session")
def node_modules() -> Path:
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return JS / "node_modules"


@pytest.mark.parametrize(
    "model", ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"]
)
async def test_vercel_ai_sdk_default_openai_provider(
    gateway: LiveGateway, node_modules: Path, model: str
) -> None:
    env = {
        **os.environ,
        "FAREWAY_URL": gateway.url + "/v1",
        "FAREWAY_KEY": MASTER_KEY,
        "FAREWAY_MODEL": model,
    }
    proc = await asyncio.create_subprocess_exec(
        "node",
        "responses.mjs",
        cwd=JS,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"node failed ({proc.returncode}):\n{err.decode()[-4000:]}"
    result = json.loads(out.decode().strip().splitlines()[-1])

    assert result["generateText"]["text"] == "hello from vercel"
    assert result["generateText"]["finishReason"] == "stop"
    usage = result["generateText"]["usage"]
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0
    assert usage["raw"]["cost"] > 0  # the gateway's cost rides in the usage object

    assert result["streamText"]["text"] == "streamed from vercel"
    assert result["streamText"]["chunks"] >= 1 and result["streamText"]["finishReason"] == "stop"

    for case in ("toolCall", "streamToolCall"):
        r = result[case]
        assert r["steps"] == 2, case
        assert [c["name"] for c in r["toolCalls"]] == ["get_weather"], case
        assert isinstance(r["toolCalls"][0]["input"]["city"], str), case
        assert r["text"], case  # the model answered after the tool's result came back
    assert result["toolCall"]["toolResults"][0]["forecast"] == "sunny"
    assert "tool-call" in result["streamToolCall"]["partTypes"]
    assert "text-delta" in result["streamToolCall"]["partTypes"]


@pytest.mark.parametrize(
    "model", ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"]
)
async def test_vercel_ai_sdk_generate_object(gateway: LiveGateway, node_modules: Path, model: str) -> None:
    """generateObject / streamObject (zod schema -> Responses text.format json_schema) on each
    upstream dialect: the SDK itself validates the object against the schema."""
    env = {
        **os.environ,
        "FAREWAY_URL": gateway.url + "/v1",
        "FAREWAY_KEY": MASTER_KEY,
        "FAREWAY_MODEL": model,
    }
    proc = await asyncio.create_subprocess_exec(
        "node", "objects.mjs", cwd=JS, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"node failed ({proc.returncode}):\n{err.decode()[-4000:]}"
    result = json.loads(out.decode().strip().splitlines()[-1])
    for case in ("generateObject", "streamObject"):
        obj = result[case]["object"]
        assert obj["severity"] in ("low", "high") and obj["parts"], case
        assert all(1 <= p["qty"] <= 5 for p in obj["parts"]), case
    assert result["generateObject"]["finishReason"] == "stop"
