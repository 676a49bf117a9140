"""Concurrent Lambda invocations interleaved in virtual time.

The domain code is synchronous, so each invocation runs in its own greenlet
(a coroutine with its own stack), and exactly one of them or the event loop
runs at any moment: a strict hand-off, hence deterministic. An invocation that
makes an AWS request ``pause``s for its latency: the loop resumes it at
``now + latency`` and, in between, runs whatever else is due — other
invocations' requests, event deliveries, completions. Two invocations can
therefore read the same counters and race to admit, as deployed Lambdas do
(``CAP_REACHED``).

Greenlets rather than threads: a hand-off is a stack switch of about a
microsecond instead of two semaphores and an OS reschedule (the full
100,000-request trace makes millions of them). Each invocation's CPU is
counted while it runs (``cpu_seconds``), not while it waits.

Fast path: if nothing else is due before the invocation would wake up, the
clock simply moves on (no switch) — the result is the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from greenlet import getcurrent, greenlet


class _Strand:
    __slots__ = ("caller", "cpu", "done", "error", "fn", "glet", "on_done", "since")

    def __init__(self, fn: Callable[[], None], on_done: Callable[[], None] | None) -> None:
        self.fn = fn
        self.done = False
        self.error: BaseException | None = None
        self.on_done = on_done
        self.glet: greenlet | None = None
        self.caller: greenlet | None = None  # who resumed it, and gets control back
        self.cpu = 0.0  # CPU seconds spent running (time.thread_time)
        self.since = 0.0


class Strands:
    """``loop`` is a ``bench.sim.EventLoop``: ``now``, ``schedule``, ``next_at``, ``advance``."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.current: _Strand | None = None
        self.spawned = 0
        self.active = 0
        self.max_active = 0

    def spawn(self, fn: Callable[[], None], on_done: Callable[[], None] | None = None) -> None:
        """Start an invocation now; it runs until its first pause (or its end)."""
        strand = _Strand(fn, on_done)
        self.spawned += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)

        def body() -> None:
            try:
                fn()
            except BaseException as exc:  # re-raised where it was resumed
                strand.error = exc
            strand.done = True
            strand.cpu += time.thread_time() - strand.since
            # Returning hands control to the greenlet's parent: its last resumer.

        strand.glet = greenlet(body)
        self._resume(strand)

    def pause(self, seconds: float) -> None:
        """The calling invocation waits ``seconds`` of virtual time."""
        if seconds <= 0:
            return
        strand = self.current
        if strand is None:
            return  # outside an invocation (setup, the loop itself): free
        wake = self.loop.now + seconds
        if self.loop.next_at() > wake:
            self.loop.advance(wake)  # nobody else acts meanwhile
            return
        self.loop.schedule(wake, lambda: self._resume(strand))
        strand.cpu += time.thread_time() - strand.since
        assert strand.caller is not None
        strand.caller.switch()  # back to whoever resumed it; _resume brings it back

    def cpu_seconds(self) -> float:
        """CPU the current invocation has used so far (its own running time only)."""
        strand = self.current
        if strand is None:
            return time.thread_time()
        return strand.cpu + (time.thread_time() - strand.since)

    def _resume(self, strand: _Strand) -> None:
        previous = self.current
        if previous is not None:  # resumed from inside an invocation: its CPU stops
            previous.cpu += time.thread_time() - previous.since
        caller = getcurrent()
        strand.caller = caller
        assert strand.glet is not None
        strand.glet.parent = caller
        self.current = strand
        strand.since = time.thread_time()
        strand.glet.switch()
        # Here again once the strand paused or ended.
        self.current = previous
        if previous is not None:
            previous.since = time.thread_time()  # its own CPU resumes counting
        if strand.done:
            self.active -= 1
            if strand.error is not None:
                raise strand.error
            if strand.on_done is not None:
                strand.on_done()
