"""`trainyard webhook set|show|deliveries|delete` over the API (a canned HTTP server)."""

from __future__ import annotations

import json

from tests.unit.test_cli import Routes, api, invoke

__all__ = ["api"]  # the fixture, shared with test_cli

HOOK = {
    "tenantId": "acme",
    "url": "https://hooks.acme.example/trainyard",
    "events": ["run.succeeded", "run.failed"],
    "createdAt": "2026-12-01T00:00:00.000Z",
    "updatedAt": "2026-12-01T00:00:00.000Z",
}


def test_set_sends_the_url_and_events_and_shows_the_secret_once(api: tuple[str, Routes]) -> None:
    url, routes = api
    routes.table[("PUT", "/tenants/acme/webhook")] = (200, {**HOOK, "secret": "whsec_abc"})
    result = invoke(
        url, "webhook", "set", "acme", HOOK["url"], "-e", "run.succeeded", "-e", "run.failed"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(routes.seen[0][2]) == {"url": HOOK["url"], "events": HOOK["events"]}
    assert "whsec_abc" in result.output and "shown only now" in result.output


def test_set_without_events_subscribes_to_all(api: tuple[str, Routes]) -> None:
    url, routes = api
    routes.table[("PUT", "/tenants/acme/webhook")] = (200, {**HOOK, "secret": "s"})
    assert invoke(url, "webhook", "set", "acme", HOOK["url"]).exit_code == 0
    assert json.loads(routes.seen[0][2]) == {"url": HOOK["url"]}


def test_a_refused_url_is_the_apis_code_and_message(api: tuple[str, Routes]) -> None:
    url, routes = api
    routes.table[("PUT", "/tenants/acme/webhook")] = (
        400,
        {"error": {"code": "WebhookUrlNotHttps", "message": "url must be https://"}},
    )
    result = invoke(url, "webhook", "set", "acme", "http://x.example/")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error WebhookUrlNotHttps: url must be https://"


def test_show_deliveries_and_delete(api: tuple[str, Routes], monkeypatch) -> None:
    # The CLI's console fixes its width when first imported (rich reads COLUMNS
    # then); another test in the same worker may have imported it narrow.
    from rich.console import Console

    from trainyard.cli import common

    monkeypatch.setattr(common, "console", Console(width=200))
    url, routes = api
    routes.table[("GET", "/tenants/acme/webhook")] = (200, HOOK)
    routes.table[("GET", "/tenants/acme/webhook/deliveries?limit=20")] = (
        200,
        {
            "deliveries": [
                {
                    "deliveryId": "d-1",
                    "event": "run.failed",
                    "runId": "r1",
                    "status": "failed",
                    "attempts": 5,
                    "lastError": "ReadTimeoutError",
                    "createdAt": "2026-12-01T00:00:00.000Z",
                    "updatedAt": "2026-12-01T00:10:00.000Z",
                }
            ]
        },
    )
    routes.table[("DELETE", "/tenants/acme/webhook")] = (200, HOOK)
    shown = invoke(url, "webhook", "show", "acme")
    assert shown.exit_code == 0 and "hooks.acme.example" in shown.output
    listed = invoke(url, "webhook", "deliveries", "acme", env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "ReadTimeoutError" in listed.output and "failed" in listed.output
    removed = invoke(url, "webhook", "delete", "acme")
    assert removed.exit_code == 0 and "removed" in removed.output
