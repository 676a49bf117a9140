"""The operator console in a real browser (headless Debian chromium via Playwright's
Python client) over the embedded stack: tenants with queued, running, succeeded and
failed runs, every page opened and read as a person reads it; and a deployed API
that denies the credentials, which the page says in words.

Screenshots go to each test's tmp_path; TRAINYARD_UPDATE_SCREENSHOT=1 also writes
docs/console.png (the README's picture).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from trainyard.console.fmt import usd
from trainyard.console.server import ConsoleServer
from trainyard.data import tenant_csv
from trainyard.local.stack import EmbeddedStack

from .conftest import Api, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
BUSY, DONE, BROKEN, LATE = "con-busy", "con-done", "con-broken", "con-late"
HOLD_SECONDS = 600  # the held runs stay RUNNING this long (purged at the end)


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Chromium is missing: `make install` installs Debian's chromium package")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Chromium refuses to run as root with its sandbox (CI runs as root).
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), headless=True, args=args)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    tab.screenshot(path=str(tmp_path / "last.png"), full_page=True)
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def _route_absent(response: Any) -> bool:
    """This API has no such route yet (API Gateway's answer, which the local stack gives)."""
    return response.status_code in (403, 404) and (
        "Missing Authentication Token" in response.text or "RouteNotFound" in response.text
    )


def _runs(api: Api, tenant: str) -> list[dict[str, Any]]:
    return api.get(f"/tenants/{tenant}/runs").json()["runs"]


@pytest.fixture(scope="module")
def scenario(stack: EmbeddedStack, api: Api, onboard: Any) -> Iterator[dict[str, Any]]:
    """One tenant with a run held RUNNING and one QUEUED behind it (basic: one run per
    tenant), one whose run succeeded, one whose run failed."""
    stack.faults.slow_step(BUSY, "Train", HOLD_SECONDS)
    stack.faults.slow_step(LATE, "Train", HOLD_SECONDS)
    stack.faults.fail_step(BROKEN, "Train", reason="injected: the training job ran out of memory")
    tenants = {BUSY: onboard(BUSY, "basic"), DONE: onboard(DONE, "premium")}
    tenants[BROKEN] = onboard(BROKEN, "standard")
    s3 = stack.client("s3")

    def upload(tenant: str, name: str) -> None:
        record = tenants[tenant]
        key = f"{record['dataPrefix']}{name}"
        s3.put_object(Bucket=record["dataBucket"], Key=key, Body=tenant_csv(tenant))

    upload(BUSY, "first.csv")
    upload(DONE, "only.csv")
    upload(BROKEN, "only.csv")
    wait_for(
        lambda: any(r["status"] == "RUNNING" for r in _runs(api, BUSY)),
        timeout=60,
        what="the busy tenant's run RUNNING",
    )
    upload(BUSY, "second.csv")
    wait_for(
        lambda: [r["status"] for r in _runs(api, BUSY)] == ["QUEUED", "RUNNING"],
        timeout=60,
        what="a second run QUEUED behind the first",
    )
    for tenant in (DONE, BROKEN):
        wait_for(
            lambda t=tenant: all(r["status"] in TERMINAL for r in _runs(api, t)) and _runs(api, t),
            timeout=240,
            interval=1,
            what=f"{tenant}'s run to end",
        )
    yield tenants
    stack.faults.reset()
    # Stop the held runs (and the queued one): later tests get the basic plan's slots back.
    held = [t for t in (BUSY, LATE) if api.get(f"/tenants/{t}").status_code == 200]
    for tenant in held:
        api.call("DELETE", f"/tenants/{tenant}", params={"purge": "true"})

    def gone() -> bool:
        stack.advance_tenants_now()
        return all(api.get(f"/tenants/{t}").status_code == 404 for t in held)

    wait_for(gone, timeout=90, interval=1, what="the held tenants purged")


@pytest.fixture(scope="module")
def console(stack: EmbeddedStack) -> Iterator[ConsoleServer]:
    with ConsoleServer(stack.api_url, port=0) as server:
        yield server


def _shot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_queue_page_shows_running_against_the_cap_and_the_waiting_run(
    scenario: dict[str, Any], console: ConsoleServer, page: Any, api: Api, tmp_path: Path
) -> None:
    page.goto(f"{console.url}/queue")
    assert page.title() == "Queue · Trainyard console"
    basic = page.locator("section.plan[data-plan=basic]")
    assert "Plan basic" in basic.locator("h2").inner_text()
    running = api.get("/queue").json()["basic"]["running"]
    assert f"{running} of cap 4" in basic.inner_text()
    # Share of the global cap of 20 by weight (1 of 1 + 2 + 4).
    assert "2.9 slots (weight 1 of 7)" in basic.inner_text()
    (queued,) = [r for r in _runs(api, BUSY) if r["status"] == "QUEUED"]
    row = basic.locator(f"tr[data-run-id='{queued['runId']}']")
    assert row.locator("td").nth(0).inner_text() == "1"  # its queue position
    assert BUSY in row.inner_text()
    # waitingFor / estimatedStartAt are issue 15's: the text, or a dash where absent.
    waiting = row.locator("td.waiting-for").inner_text()
    estimate = row.locator("td.estimated-start").inner_text()
    if queued.get("waitingFor"):
        assert queued["waitingFor"]["code"] in waiting
    else:
        assert waiting.startswith("—")
    assert estimate if "estimatedStartAt" in queued else estimate == "—"
    _shot(page, tmp_path, "queue")


def test_queue_page_updates_without_a_reload(
    scenario: dict[str, Any], console: ConsoleServer, page: Any, stack: EmbeddedStack, onboard: Any
) -> None:
    page.goto(f"{console.url}/queue")
    page.evaluate("() => { window.notReloaded = true; }")
    running = page.locator("section.plan[data-plan=basic] dd.running-count span")
    before = int(running.get_attribute("data-running"))
    # Another basic tenant starts a run: the open page shows it by itself.
    late = onboard(LATE, "basic")
    stack.client("s3").put_object(
        Bucket=late["dataBucket"], Key=f"{late['dataPrefix']}late.csv", Body=tenant_csv(LATE)
    )
    page.locator(
        f"section.plan[data-plan=basic] dd.running-count span[data-running='{before + 1}']"
    ).wait_for(timeout=30_000)
    assert page.evaluate("() => window.notReloaded") is True  # same document, no reload


def test_timeline_draws_a_bar_per_run_with_cap_lines(
    scenario: dict[str, Any], console: ConsoleServer, page: Any, api: Api, tmp_path: Path
) -> None:
    page.goto(f"{console.url}/timeline")
    for tenant in (BUSY, DONE, BROKEN):
        for run in _runs(api, tenant):
            bar = page.locator(f"g.bar[data-run-id='{run['runId']}']")
            assert bar.count() == 1, run["runId"]
            assert bar.get_attribute("data-status") == run["status"]
            label = bar.get_attribute("aria-label")
            assert tenant in label and run["status"] in label  # status as text, not colour
            box = bar.bounding_box()
            assert box and box["width"] > 0
    busy = page.locator("section.timeline-plan[data-plan=basic]")
    assert busy.locator("text.row-label", has_text=BUSY).count() == 1
    assert busy.locator("line.cap-line").get_attribute("data-cap") == "4"
    assert "cap 4" in (busy.locator("text.cap-label").text_content() or "")
    # The running run has a bar; the queued one only its waiting outline so far.
    (held,) = [r for r in _runs(api, BUSY) if r["status"] == "RUNNING"]
    assert page.locator(f"g.bar[data-run-id='{held['runId']}'] rect.bar-run").count() == 1
    (queued,) = [r for r in _runs(api, BUSY) if r["status"] == "QUEUED"]
    assert page.locator(f"g.bar[data-run-id='{queued['runId']}'] rect.bar-run").count() == 0
    # Bars are reachable with the keyboard.
    page.locator("g.bar").first.focus()
    assert page.evaluate("() => document.activeElement.classList.contains('bar')")
    path = _shot(page, tmp_path, "timeline")
    if os.environ.get("TRAINYARD_UPDATE_SCREENSHOT") == "1":
        page.evaluate("() => document.activeElement.blur()")
        page.set_viewport_size({"width": 1280, "height": 800})
        page.screenshot(path=str(REPO / "docs" / "console.png"), full_page=False)
    assert path.stat().st_size > 10_000


def test_tenants_page_lists_status_plan_usage_and_last_run(
    scenario: dict[str, Any], console: ConsoleServer, page: Any, api: Api, tmp_path: Path
) -> None:
    page.goto(f"{console.url}/tenants")
    total = len(api.get("/tenants", params={"limit": "100"}).json()["tenants"])
    assert page.locator("table.tenants tbody tr").count() == total
    assert f"{total} tenant" in page.locator("#tenant-count").inner_text()
    done = page.locator(f"tr[data-tenant={DONE}]")
    cells = done.locator("td")
    assert cells.nth(0).inner_text() == "ACTIVE"
    assert cells.nth(1).inner_text() == "premium"
    assert cells.nth(2).inner_text() == "silo"
    assert "of unlimited" in cells.nth(3).inner_text()  # premium has no monthly budget
    usage = api.get(f"/tenants/{DONE}/usage").json()
    assert cells.nth(4).inner_text() == usd(usage["costEstimateUsd"])
    broken = api.get(f"/tenants/{BROKEN}/usage").json()
    budget = page.locator(f"tr[data-tenant={BROKEN}] td.usage")
    assert f"of {broken['budgetHours']:,.2f} h" in budget.inner_text()
    assert budget.locator("meter").count() == 1
    assert "SUCCEEDED" in done.locator("td.last-run").inner_text()
    assert "FAILED" in page.locator(f"tr[data-tenant={BROKEN}] td.last-run").inner_text()
    models = api.get(f"/tenants/{DONE}/models")
    count = done.locator("td.model-count").inner_text()
    assert count == (
        "not available on this API" if _route_absent(models) else str(len(models.json()["models"]))
    )
    # The tenant's name leads to its page.
    page.locator(f"tr[data-tenant={DONE}] a").click()
    page.wait_for_url(re.compile(f"/tenants/{DONE}$"))
    _shot(page, tmp_path, "tenants")


def test_tenant_page_shows_runs_with_metrics_failures_and_models(
    scenario: dict[str, Any], console: ConsoleServer, page: Any, api: Api, tmp_path: Path
) -> None:
    page.goto(f"{console.url}/tenants/{BROKEN}")
    assert page.locator("h1").inner_text() == f"Tenant {BROKEN}"
    (failed,) = _runs(api, BROKEN)
    row = page.locator(f"table.runs tr[data-run-id='{failed['runId']}']")
    assert "FAILED" in row.inner_text()
    assert "ran out of memory" in row.locator("td.failure").inner_text()

    page.goto(f"{console.url}/tenants/{DONE}")
    (run,) = _runs(api, DONE)
    row = page.locator(f"table.runs tr[data-run-id='{run['runId']}']")
    assert "SUCCEEDED" in row.inner_text()
    assert f"auc {run['metrics']['auc']:.3f}" in row.inner_text()
    models = api.get(f"/tenants/{DONE}/models")
    if _route_absent(models):
        unavailable = page.locator("#models-unavailable").inner_text()
        assert unavailable == "Models: not available on this API"
    else:
        assert page.locator("table.models tbody tr").count() == len(models.json()["models"])
    deliveries = api.get(f"/tenants/{DONE}/webhook/deliveries")
    if _route_absent(deliveries):
        assert "not available on this API" in page.locator("#deliveries-unavailable").inner_text()
    _shot(page, tmp_path, "tenant")

    # The run's own page, one click away: what it trained with and its lineage.
    page.goto(f"{console.url}/tenants/{DONE}")
    page.locator(f"table.runs tr[data-run-id='{run['runId']}'] a").click()
    page.wait_for_url(f"**/tenants/{DONE}/runs/{run['runId']}")
    training = page.locator("table.run-training").inner_text()
    assert run["training"]["algorithm"] in training and run["training"]["imageUri"] in training
    lineage = page.locator("table.run-lineage").inner_text()
    assert run["lineage"]["definitionVersion"] in lineage
    inputs = page.locator("table.run-inputs tbody tr")
    assert inputs.count() == min(len(run["lineage"]["inputs"]), 20)
    _shot(page, tmp_path, "run")
    page.goto(f"{console.url}/tenants/{DONE}/runs/0123456789abcdef0123456789abcdef")
    assert "RunNotFound" in page.locator("section.errors").inner_text()

    page.goto(f"{console.url}/tenants/con-nobody")
    assert "TenantNotFound" in page.locator("section.errors").inner_text()


def test_approving_a_model_in_the_browser_changes_its_status(
    scenario: dict[str, Any], console: ConsoleServer, page: Any, api: Api, tmp_path: Path
) -> None:
    listed = api.get(f"/tenants/{DONE}/models")
    if _route_absent(listed):
        pytest.skip("needs issue 15's GET /tenants/{id}/models and POST .../approve")
    (model,) = listed.json()["models"]
    assert model["status"] == "PendingManualApproval"
    version = str(model["version"])
    page.goto(f"{console.url}/tenants/{DONE}")
    row = page.locator(f"table.models tr[data-version='{version}']")
    assert "PendingManualApproval" in row.locator("td.model-status").inner_text()
    page.fill(f"#reason-{version}", "AUC good enough for production")
    page.locator(f"#approve-{version}").focus()
    page.keyboard.press("Enter")  # by keyboard, as anyone can
    page.locator("#notice").filter(has_text="approved").wait_for(timeout=15_000)
    row.locator("td.model-status", has_text="Approved").wait_for(timeout=15_000)
    (after,) = api.get(f"/tenants/{DONE}/models").json()["models"]
    assert after["status"] == "Approved"
    assert "AUC good enough" in row.locator("td.model-decision").inner_text()
    _shot(page, tmp_path, "approved")
    # Changed minds: reject it (a click this time); approving again is offered.
    page.locator(f"#reject-{version}").click()
    row.locator("td.model-status", has_text="Rejected").wait_for(timeout=15_000)
    assert page.locator(f"#approve-{version}").is_enabled()
    assert page.locator(f"#reject-{version}").is_disabled()
    (rejected,) = api.get(f"/tenants/{DONE}/models").json()["models"]
    assert rejected["status"] == "Rejected"


def test_plans_page_lists_caps_weights_and_instance_types(
    console: ConsoleServer, page: Any, api: Api, tmp_path: Path
) -> None:
    page.goto(f"{console.url}/plans")
    plans = api.get("/plans").json()
    rows = page.locator("table.plans tbody tr")
    assert rows.count() == len(plans["plans"])
    for plan in plans["plans"]:
        cells = page.locator(f"tr[data-plan={plan['name']}] td")
        assert cells.nth(0).inner_text() == str(plan["maxConcurrentRuns"])
        assert cells.nth(1).inner_text() == str(plan["maxConcurrentRunsPerTenant"])
        assert cells.nth(3).inner_text() == str(plan["weight"])
        assert cells.nth(5).inner_text() == plan["isolation"]
        instances = f"{plan['trainingInstanceCount']} x {plan['trainingInstanceType']}"
        assert cells.nth(6).inner_text() == instances
    assert f"Global cap: {plans['globalMaxConcurrentRuns']}" in page.locator("main").inner_text()
    # The training catalog (GET /algorithms through the proxy): each algorithm's plans.
    catalog = api.get("/algorithms").json()
    assert page.locator("table.algorithms tbody tr").count() == len(catalog["algorithms"])
    for entry in catalog["algorithms"]:
        cells = page.locator(f"tr[data-algorithm={entry['name']}] td")
        assert cells.nth(0).inner_text() == f"{entry['framework']} {entry['frameworkVersion']}"
        assert cells.nth(2).inner_text() == ", ".join(entry["plans"])
    _shot(page, tmp_path, "plans")


# ------------------------------------------------ a deployed API that says no


class _Denying(BaseHTTPRequestHandler):
    """API Gateway refusing a signature, as it answers IAM auth failures."""

    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        _Denying.seen.append(dict(self.headers))
        body = json.dumps({"message": "The security token included in the request is invalid."})
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


def test_a_deployed_api_that_denies_the_credentials_is_said_in_words(
    page: Any, tmp_path: Path
) -> None:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Denying)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{upstream.server_address[1]}/v1"
        with ConsoleServer(url, port=0, sigv4=True, region="us-east-1") as server:
            for path in ("/queue", "/timeline", "/tenants", "/tenants/acme", "/plans"):
                page.goto(server.url + path)
                alert = page.locator("section.errors[role=alert]")
                assert "denied the console's credentials" in alert.inner_text(), path
                assert "HTTP 403" in alert.inner_text()
                assert page.locator("nav").is_visible()  # a page, never a blank one
            _shot(page, tmp_path, "denied")
    finally:
        upstream.shutdown()
        upstream.server_close()
        thread.join(timeout=5)
    assert _Denying.seen and all("AWS4-HMAC-SHA256" in h["Authorization"] for h in _Denying.seen)
