"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium):
log in through the form, wait for the totals, check they equal /v1/usage, drill into a call's
attempts, check the session cookie's flags and that user input renders as text, save a screenshot
to test-artifacts/dashboard.png, log out."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import LiveGateway, gateway_config, openai_client
from tests.test_usage_api import seed, start_usage_gateway

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None or not Path(CHROMEDRIVER).exists(),
        reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
    ),
]


@pytest.fixture(scope="module")
async def dash(
    sim: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[LiveGateway, str, str]]:
    gw = await start_usage_gateway(gateway_config(sim.url, tmp_path_factory.mktemp("dash-state")))
    keys = gw.app.gateway.keys
    alice_secret, alice = keys.create("alice")
    _, bob = keys.create("bob")
    admin_secret, _ = keys.create("ops", role="admin")
    await seed(gw.app, alice.key_id, bob.key_id)
    client = openai_client(gw.url + "/v1", alice_secret)
    for model in ("openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest", "groq/llama-3.1-8b-instant"):
        try:
            await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "echo:hi"}]
            )
        except openai.APIError:
            pass  # a model the catalog lacks is still a recorded (failed) call
    await gw.app.gateway.accounting.ledger.flush()
    yield gw, admin_secret, alice_secret
    await gw.stop()


def drive(url: str, admin_key: str, inference_key: str) -> dict[str, Any]:
    """The whole browser session, run in a worker thread (selenium blocks; the gateway runs on
    the test's event loop)."""
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    profile = tempfile.mkdtemp(prefix="fareway-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM or "chromium"
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    out: dict[str, Any] = {}
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(url + "/ui")
        wait.until(ec.presence_of_element_located((By.ID, "key")))
        assert "?" not in driver.current_url
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dashboard-login.png"))

        # an inference key is refused, with a message
        driver.find_element(By.ID, "key").send_keys(inference_key)
        driver.find_element(By.ID, "login-submit").click()
        out["refused"] = wait.until(ec.presence_of_element_located((By.ID, "login-error"))).text

        driver.find_element(By.ID, "key").send_keys(admin_key)
        driver.find_element(By.ID, "login-submit").click()
        wait.until(lambda d: d.find_element(By.ID, "app").get_attribute("data-state") == "ready")
        assert driver.current_url.rstrip("/").endswith("/ui"), driver.current_url  # no key in the URL
        out["cookies"] = driver.get_cookies()

        def dv(eid: str) -> str:
            return driver.find_element(By.ID, eid).get_attribute("data-value") or ""

        out["since"] = driver.find_element(By.ID, "app").get_attribute("data-since")
        out["totals"] = {
            "cost": dv("t-cost"),
            "calls": dv("t-calls"),
            "errors": dv("t-errors"),
            "input_tokens": dv("t-input"),
            "output_tokens": dv("t-output"),
            "unknown_cost_calls": dv("t-unknown"),
            "cost_saved": dv("t-saved"),
            "cache_hits": dv("t-hits"),
        }
        out["hits_text"] = driver.find_element(By.ID, "t-hits").text
        out["cost_text"] = driver.find_element(By.ID, "t-cost").text
        out["chart_bars"] = len(driver.find_elements(By.CSS_SELECTOR, "#chart rect.bar"))
        out["models_text"] = driver.find_element(By.ID, "by-model").text
        out["keys_text"] = driver.find_element(By.ID, "by-key").text
        out["latency_text"] = driver.find_element(By.ID, "latency").text

        # drill down: the fallback call r3 shows both of its attempts
        row = driver.find_element(By.CSS_SELECTOR, 'tr.call[data-request-id="r3"]')
        row.click()
        detail = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "tr.detail")))
        out["attempts"] = [r.text for r in detail.find_elements(By.CSS_SELECTOR, "tr.attempt")]

        try:
            driver.switch_to.alert.accept()
            out["alert"] = True
        except NoAlertPresentException:
            out["alert"] = False

        driver.execute_script("window.scrollTo(0, 0)")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1440, min(int(height) + 40, 4000))
        driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        out["console"] = [
            e
            for e in driver.get_log("browser")
            if e.get("level") == "SEVERE" and "/ui/login - " not in e.get("message", "")  # the refused login
        ]

        # the data calls authenticate by the cookie alone; logging out ends the session
        driver.find_element(By.ID, "logout").click()
        wait.until(ec.presence_of_element_located((By.ID, "key")))
        driver.get(url + "/ui/api/overview")
        out["after_logout"] = driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return out


async def test_dashboard_in_a_real_browser(dash: tuple[LiveGateway, str, str]) -> None:
    gw, admin_key, alice_key = dash
    got = await asyncio.to_thread(drive, gw.url, admin_key, alice_key)

    assert "not an admin key" in got["refused"]
    session = [c for c in got["cookies"] if c["name"] == "fareway_ui"]
    assert len(session) == 1
    assert session[0]["httpOnly"] is True and session[0]["sameSite"] == "Strict"
    assert admin_key not in session[0]["value"]

    async with (
        aiohttp.ClientSession() as s,
        s.get(
            gw.url + "/v1/usage",
            params={"since": got["since"]},
            headers={"authorization": f"Bearer {admin_key}"},
        ) as r,
    ):
        assert r.status == 200
        api = (await r.json())["totals"]
    t = got["totals"]
    assert Decimal(t["cost"]) == Decimal(api["cost"])
    assert Decimal(t["cost_saved"]) == Decimal(api["cost_saved"]) and Decimal(api["cost_saved"]) > 0
    assert "cache hit" in got["hits_text"]  # the seeded hit, and the hit rate beside it
    for name in ("calls", "errors", "input_tokens", "output_tokens", "unknown_cost_calls", "cache_hits"):
        assert int(t[name]) == api[name], name
    assert api["calls"] >= 8  # seven seeded calls plus the real ones
    assert got["cost_text"].startswith("$")

    assert got["chart_bars"] > 0
    assert "<script>alert(1)</script>" in got["models_text"]  # user input shown as text
    assert got["alert"] is False
    assert "alice" in got["keys_text"] and "bob" in got["keys_text"]
    assert "openai" in got["latency_text"]
    assert len(got["attempts"]) == 2
    assert "error" in got["attempts"][0] and "boom" in got["attempts"][0]
    assert "fallback" in got["attempts"][1]
    assert got["console"] == [], got["console"]
    assert "Not signed in" in got["after_logout"]
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
