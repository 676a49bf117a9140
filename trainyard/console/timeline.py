"""The Timeline page's geometry: a Gantt of runs per plan and tenant, with cap lines.

Pure: runs (the API's JSON) in, SVG coordinates out; the template draws them.
Per plan, a strip shows how many of its runs were running over time against
the plan's cap (a dashed line), so idle slots and a full plan are visible at a
glance, and below it one row per tenant: a thin outline while a run waited, a
bar while it ran. Status is in each bar's pattern and its text, never its
colour alone.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from trainyard.console import fmt

WIDTH = 960
LABEL = 160  # the tenant names' column
RIGHT = 16
ROW = 24
BAR = 14
STRIP = 64  # the concurrency strip's height
TOP = 22  # room for the time axis labels
TICK_STEPS_MIN = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360)
MAX_HOURS = 24
AUTO_MAX_HOURS = 3.0  # "auto" zooms to the runs of the last 3 hours
AUTO_MIN_SECONDS = 120

# status -> CSS class (each class has its own fill pattern; see console.css).
STATUS_CLASS = {
    "SUCCEEDED": "ok",
    "FAILED": "failed",
    "STOPPED": "stopped",
    "RUNNING": "running",
    "STARTING": "running",
    "QUEUED": "queued",
}


def _x(ts: datetime, start: datetime, end: datetime) -> float:
    span = (end - start).total_seconds() or 1.0
    frac = (ts - start).total_seconds() / span
    return LABEL + max(0.0, min(1.0, frac)) * (WIDTH - LABEL - RIGHT)


def _ticks(start: datetime, end: datetime) -> list[dict[str, Any]]:
    minutes = (end - start).total_seconds() / 60
    step = next((s for s in TICK_STEPS_MIN if minutes / s <= 8), TICK_STEPS_MIN[-1]) * 60
    t = datetime.fromtimestamp(math.ceil(start.timestamp() / step) * step, UTC)
    ticks = []
    while t <= end:
        ticks.append({"x": round(_x(t, start, end), 1), "label": t.strftime("%H:%M")})
        t += timedelta(seconds=step)
    return ticks


def in_window(run: dict[str, Any], start: datetime) -> bool:
    """A run still waiting or running, or one that ended inside the window."""
    if run.get("status") not in ("SUCCEEDED", "FAILED", "STOPPED"):
        return True
    ended = fmt.parse_ts(run.get("endedAt")) or fmt.parse_ts(run.get("queuedAt"))
    return ended is not None and ended >= start


def _bar(run: dict[str, Any], y: float, start: datetime, end: datetime) -> dict[str, Any]:
    status = str(run.get("status") or "UNKNOWN")
    queued = fmt.parse_ts(run.get("queuedAt")) or end
    started = fmt.parse_ts(run.get("startedAt"))
    finished = fmt.parse_ts(run.get("endedAt"))
    wait_end = started or finished or end
    bar: dict[str, Any] = {
        "runId": run.get("runId"),
        "tenantId": run.get("tenantId"),
        "status": status,
        "cls": STATUS_CLASS.get(status, "other"),
        "qx": round(_x(queued, start, end), 1),
        "qw": round(max(1.0, _x(wait_end, start, end) - _x(queued, start, end)), 1),
        "y": y,
        "x": None,
        "w": None,
    }
    if started is not None:
        stop = finished or end
        bar["x"] = round(_x(started, start, end), 1)
        bar["w"] = round(max(2.0, _x(stop, start, end) - _x(started, start, end)), 1)
    waited = fmt.duration(((started or finished or end) - queued).total_seconds())
    ran = fmt.run_duration(run, end)
    bar["label"] = (
        f"{run.get('tenantId')} run {fmt.short_id(run.get('runId'))}: {status}, "
        f"waited {waited}, ran {ran}"
    )
    return bar


def _concurrency(
    runs: list[dict[str, Any]], cap: int, top: float, start: datetime, end: datetime
) -> dict[str, Any]:
    changes: list[tuple[datetime, int]] = []
    for run in runs:
        began = fmt.parse_ts(run.get("startedAt"))
        if began is None:
            continue
        changes.append((began, 1))
        changes.append((fmt.parse_ts(run.get("endedAt")) or end, -1))
    # Ends sort before starts at the same instant: a slot freed and reused is no overlap.
    changes.sort(key=lambda c: (c[0], c[1]))
    level, peak, points = 0, 0, [(start, 0)]
    for ts, delta in changes:
        level += delta
        peak = max(peak, level)
        points.append((max(ts, start), level))
    scale = max(cap, peak, 1)

    def y(count: int) -> float:
        return round(top + STRIP - 6 - (STRIP - 12) * count / scale, 1)

    path = f"M {LABEL} {y(0)}"
    for ts, count in points[1:]:
        path += f" H {round(_x(ts, start, end), 1)} V {y(count)}"
    path += f" H {WIDTH - RIGHT}"
    return {"path": path, "capY": y(cap), "peak": peak, "baseY": y(0), "top": top}


def auto_hours(runs: list[dict[str, Any]], now: datetime) -> float:
    """A window from just before the earliest run of the last few hours to now (at least
    five minutes): runs of seconds or minutes stay visible as bars, not slivers."""
    horizon = now - timedelta(hours=AUTO_MAX_HOURS)
    starts = [fmt.parse_ts(r.get("queuedAt")) for r in runs if in_window(r, horizon)]
    earliest = min((s for s in starts if s is not None and s >= horizon), default=now)
    seconds = max(AUTO_MIN_SECONDS, (now - earliest).total_seconds() * 1.08)
    return min(AUTO_MAX_HOURS, seconds / 3600)


def _lanes(runs: list[dict[str, Any]], now: datetime) -> list[list[dict[str, Any]]]:
    """A tenant's runs in as few lanes as keep them from overlapping (a run waiting
    behind a running one, or a plan that allows several at once, gets its own)."""
    lanes: list[list[dict[str, Any]]] = []
    ends: list[datetime] = []
    for run in sorted(runs, key=lambda r: str(r.get("queuedAt"))):
        begin = fmt.parse_ts(run.get("queuedAt")) or now
        end = fmt.parse_ts(run.get("endedAt")) or now
        for i, lane_end in enumerate(ends):
            if lane_end <= begin:
                lanes[i].append(run)
                ends[i] = end
                break
        else:
            lanes.append([run])
            ends.append(end)
    return lanes


def build(
    runs: list[dict[str, Any]],
    caps: dict[str, int],
    now: datetime,
    hours: float | None,
) -> dict[str, Any]:
    """Per plan: tenant rows, run bars, the running-count strip and its cap line.
    ``hours`` None: ``auto_hours``."""
    auto = hours is None
    hours = auto_hours(runs, now) if hours is None else max(0.05, min(float(MAX_HOURS), hours))
    start = now - timedelta(hours=hours)
    shown = [r for r in runs if in_window(r, start)]
    plan_names = sorted({str(r.get("plan")) for r in shown} | set(caps))
    plans = []
    for name in plan_names:
        mine = [r for r in shown if str(r.get("plan")) == name]
        tenants = sorted({str(r.get("tenantId")) for r in mine})
        cap = int(caps.get(name) or 0)
        strip = _concurrency(mine, cap, TOP, start, now)
        rows_top = TOP + STRIP + 8
        rows: list[dict[str, Any]] = []
        bars: list[dict[str, Any]] = []
        for tenant in tenants:
            lanes = _lanes([r for r in mine if str(r.get("tenantId")) == tenant], now)
            for lane, lane_runs in enumerate(lanes):
                y = rows_top + len(rows) * ROW
                label = tenant if lane == 0 else ""
                rows.append({"tenantId": label, "y": y, "textY": y + ROW / 2 + 4})
                bars += [_bar(run, y + (ROW - BAR) / 2, start, now) for run in lane_runs]
        height = rows_top + max(1, len(rows)) * ROW + 8
        plans.append(
            {
                "name": name,
                "cap": cap,
                "strip": strip,
                "rows": rows,
                "bars": bars,
                "height": height,
                "empty": not mine,
                "runs": len(mine),
            }
        )
    return {
        "plans": plans,
        "ticks": _ticks(start, now),
        "width": WIDTH,
        "label": LABEL,
        "right": WIDTH - RIGHT,
        "barHeight": BAR,
        "stripHeight": STRIP,
        "hours": hours,
        "auto": auto,
        "span": fmt.duration(hours * 3600),
        "start": fmt.clock(start.isoformat()),
        "end": fmt.clock(now.isoformat()),
        "total": len(shown),
    }
