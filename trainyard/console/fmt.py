"""Formatting for people: times, durations, money, absent values ("—")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

DASH = "—"


def parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return DASH
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def run_duration(run: dict[str, Any], now: datetime) -> str:
    start = parse_ts(run.get("startedAt"))
    if start is None:
        return DASH
    end = parse_ts(run.get("endedAt")) or now
    return duration((end - start).total_seconds())


def clock(value: Any) -> str:
    """``2026-12-02 07:41:05 UTC`` (seconds: the local stack's runs take seconds)."""
    ts = parse_ts(value)
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else DASH


def relative(value: Any, now: datetime) -> str:
    ts = parse_ts(value)
    if ts is None:
        return DASH
    delta = (ts - now).total_seconds()
    text = duration(abs(delta))
    return f"in {text}" if delta > 0 else f"{text} ago"


def usd(value: Any) -> str:
    if not isinstance(value, int | float):
        return DASH
    # Local runs cost fractions of a cent: show them rather than "$0.00".
    return f"${value:,.4f}" if 0 < abs(value) < 0.01 else f"${value:,.2f}"


def hours(value: Any) -> str:
    return f"{value:,.2f} h" if isinstance(value, int | float) else DASH


def metrics(values: Any) -> str:
    if not isinstance(values, dict) or not values:
        return DASH
    parts = []
    for name in sorted(values):
        value = values[name]
        parts.append(f"{name} {value:.3f}" if isinstance(value, int | float) else f"{name} {value}")
    return ", ".join(parts)


def text(value: Any) -> str:
    if value is None or value == "":
        return DASH
    return str(value)


def short_id(value: Any) -> str:
    """The tail of a run id (its time-ordered head is the same for runs of a minute)."""
    return str(value)[-12:] if value else DASH
