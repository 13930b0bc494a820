"""The console in a real browser: Debian's chromium, driven by selenium through
/usr/bin/chromedriver (Selenium Manager is never asked: it would download a driver).

One operator's session, step by step, against the real app (uvicorn, PostgreSQL, the
relay running): sign in; activate the kill switch in hold mode through its confirm
dialog; a webhook arrives and is held; deactivate; replay it and see it stored; look
up its mid; a POST without the CSRF token is refused. The browser reports every
Content-Security-Policy violation to its log, and none may occur. A screenshot of
the page is saved; its path is printed.

The tests of this module run in order and share one browser and one server.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from ingest.app import create_app
from ingest.config.env import settings_from_env
from storage.embedded import EmbeddedPostgres
from tests.conftest import BASE_ENV, TEMPLATE
from tests.console import CONSOLE_ENV, CONSOLE_TOKEN
from tests.doubles.qstash import serve
from tests.meta import WEBHOOK, signed_headers, text_message

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
MID = "mBrowserDrill1"
DEDUP_ID = f"ig_msg_{MID}"
ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts"
# Without the background-networking flags chromium calls home, and this closed network
# refuses it (slowly); the user data directory is fresh for every run.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,1000",
)  # fmt: skip


@pytest.fixture(scope="module")
def server(pg_server: EmbeddedPostgres) -> Iterator[str]:
    name = f"console_browser_{os.getpid()}"
    url = pg_server.create_database(name, template=TEMPLATE)
    env = {**BASE_ENV, "DATABASE_URL": url, **CONSOLE_ENV}
    env |= {"RELAY_SWEEP_SECONDS": "0.2", "QSTASH_DAILY_MESSAGES": "500"}
    settings = settings_from_env(env, env_file=None)
    asyncio.run(_spend_history(url))
    try:
        with serve(create_app(settings), lifespan="on") as base_url:
            yield base_url
    finally:
        pg_server.drop_database(name)


async def _spend_history(url: str) -> None:
    """Four weeks of QStash spend before today, one day over the budget, for the chart."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "insert into qstash_spend (day, messages) select current_date - n, 180 + n * 11"
            " from generate_series(1, 28) n; update qstash_spend set messages = 620"
            " where day = current_date - 3"
        )
    finally:
        await conn.close()


def screenshot(browser: webdriver.Chrome, name: str, capsys: pytest.CaptureFixture[str]) -> Path:
    """The whole page (beyond the window) as PNG under .artifacts/; its path is printed."""
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
    )
    path = ARTIFACTS / name
    ARTIFACTS.mkdir(exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    with capsys.disabled():
        print(f"\nconsole screenshot: {path}")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    for tool, package in ((CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")):
        if not Path(tool).is_file():
            pytest.fail(f"{tool} is missing: install Debian's {package} (make test does)")
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # and the Service's path means no Selenium Manager
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(browser: webdriver.Chrome, css: str, text: str = "") -> WebElement:
    """The element matching `css` once it shows `text` (htmx swaps happen meanwhile)."""
    locator = (By.CSS_SELECTOR, css)
    wait = WebDriverWait(browser, 10)
    if text:
        wait.until(ready.text_to_be_present_in_element(locator, text))
    return wait.until(ready.visibility_of_element_located(locator))


def test_an_operator_signs_in_with_the_token_and_a_name(
    browser: webdriver.Chrome, server: str
) -> None:
    browser.get(server + "/console")
    browser.find_element(By.NAME, "name").send_keys("Alice Operator")
    browser.find_element(By.NAME, "token").send_keys(CONSOLE_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert "Alice Operator" in wait_for(browser, ".top .who").text
    assert "off" in wait_for(browser, "#kill-switch-state").text


def test_the_kill_switch_holds_after_its_confirm_dialog(browser: webdriver.Chrome) -> None:
    browser.find_element(By.NAME, "reason").send_keys("browser drill")
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=hold]").click()
    browser.find_element(By.ID, "switch-activate").click()
    dialog = wait_for(browser, "dialog#switch-confirm", "Activate the kill switch (hold)?")
    assert "nothing will be stored" in dialog.text
    assert "off" in browser.find_element(By.ID, "kill-switch-state").text  # not yet
    browser.find_element(By.ID, "switch-confirm-button").click()
    wait_for(browser, "#kill-switch-state", "ON · hold")
    assert "browser drill — Alice Operator" in browser.find_element(By.ID, "kill-switch-state").text


def test_a_webhook_that_arrives_meanwhile_is_held_and_shown(
    browser: webdriver.Chrome, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    body = text_message(MID, text="held in the drill")
    response = httpx.post(server + WEBHOOK, content=body, headers=signed_headers(body))
    assert response.status_code == 200
    # The state strip refreshes itself (every 5 s); once it counts the event as held (the
    # relay settled it so), the problems list, refreshed by hand, shows it.
    wait_for(browser, "#held-count", "1")
    wait_for(browser, "#problems-refresh").click()
    row = wait_for(browser, "#problems-rows", DEDUP_ID)
    assert "held" in row.text and "kill_switch" in row.text
    assert screenshot(browser, "console-holding.png", capsys).stat().st_size > 10_000


def test_after_deactivating_the_replay_shows_its_count_then_stores_it(
    browser: webdriver.Chrome,
) -> None:
    wait_for(browser, "#switch-deactivate").click()
    wait_for(browser, "#kill-switch-state", "off")
    wait_for(browser, f"input[name=dedup_id][value={DEDUP_ID}]").click()
    browser.find_element(By.ID, "replay-selected").click()
    wait_for(browser, "#replay-confirm", "Replay 1 event(s)?")
    browser.find_element(By.ID, "replay-confirm-button").click()
    wait_for(browser, "#replay-result", "The relay has settled all 1: direct 1.")


def test_looking_up_the_mid_shows_its_path_to_stored(browser: webdriver.Chrome) -> None:
    browser.find_element(By.ID, "lookup-query").send_keys(MID)
    browser.find_element(By.ID, "lookup-button").click()
    path = wait_for(browser, f'article[data-dedup-id="{DEDUP_ID}"]')
    steps = [li.get_attribute("data-step") for li in path.find_elements(By.CSS_SELECTOR, "li")]
    assert steps == ["admitted", "replayed", "held", "stored"] or steps == [
        "admitted", "replayed", "stored directly", "stored",
    ]  # fmt: skip
    assert (
        path.find_element(By.CSS_SELECTOR, "li[data-step=stored]").get_attribute("class") == "done"
    )


def test_clicking_the_customer_opens_their_conversation(
    browser: webdriver.Chrome, capsys: pytest.CaptureFixture[str]
) -> None:
    browser.refresh()
    wait_for(browser, "#conversations", "1234567890123456")
    browser.find_element(By.CSS_SELECTOR, '#conversations a[href$="/1234567890123456"]').click()
    wait_for(browser, "#customer", "held in the drill")
    assert "from the customer" in browser.find_element(By.ID, "customer").text
    assert screenshot(browser, "console-conversation.png", capsys).stat().st_size > 10_000


def _sideways(browser: webdriver.Chrome) -> int:
    """How far the page is wider than the window (0: nothing to scroll sideways)."""
    return int(
        browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


def test_at_420_px_wide_no_page_scrolls_sideways(
    browser: webdriver.Chrome, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    browser.set_window_size(420, 1000)
    try:
        for path, name in (
            ("/console/conversations/1234567890123456", "console-420-conversation.png"),
            ("/console", "console-420.png"),
        ):
            browser.get(server + path)
            wait_for(browser, "main")
            assert _sideways(browser) == 0, path
            screenshot(browser, name, capsys)
    finally:
        browser.set_window_size(1280, 1000)


def test_a_post_without_the_csrf_token_is_refused(browser: webdriver.Chrome, server: str) -> None:
    session = {c["name"]: c["value"] for c in browser.get_cookies()}
    form = {"action": "activate", "mode": "hold", "reason": "forged"}
    with httpx.Client(base_url=server, cookies=session) as client:
        assert client.get("/console/pulse").status_code == 200  # the browser's session works
        refused = client.post("/console/kill-switch", data=form)
    assert refused.status_code == 403
    assert "off" in browser.find_element(By.ID, "kill-switch-state").text


def test_no_content_security_violation_and_a_screenshot(
    browser: webdriver.Chrome, capsys: pytest.CaptureFixture[str]
) -> None:
    browser.refresh()  # the whole page anew: conversations and the strip as they are now
    wait_for(browser, "#audit", "kill_switch.activate")
    assert screenshot(browser, "console.png", capsys).stat().st_size > 10_000
    log = [entry["message"] for entry in browser.get_log("browser")]
    assert [m for m in log if "Content Security Policy" in m or "Refused to" in m] == []
