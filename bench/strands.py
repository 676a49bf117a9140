"""Concurrent Lambda invocations interleaved in virtual time.

The domain code is synchronous, so each invocation runs in its own thread, and
exactly one thread (the event loop or one invocation) runs at any moment: a
strict hand-off, hence deterministic. An invocation that makes an AWS request
``pause``s for its latency: the loop resumes it at ``now + latency`` and, in
between, runs whatever else is due — other invocations' requests, event
deliveries, completions. Two invocations can therefore read the same counters
and race to admit, as deployed Lambdas do (``CAP_REACHED``).

Fast path: if nothing else is due before the invocation would wake up, the
clock simply moves on (no thread switch) — the result is the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class _Strand:
    __slots__ = ("done", "error", "fn", "go", "on_done", "thread")

    def __init__(self, fn: Callable[[], None], on_done: Callable[[], None] | None) -> None:
        self.fn = fn
        self.go = threading.Semaphore(0)
        self.done = False
        self.error: BaseException | None = None
        self.on_done = on_done
        self.thread: threading.Thread | None = None


class Strands:
    """``loop`` is a ``bench.sim.EventLoop``: ``now``, ``schedule``, ``next_at``, ``advance``."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self._back = threading.Semaphore(0)
        self.current: _Strand | None = None
        self.spawned = 0
        self.active = 0
        self.max_active = 0

    def spawn(self, fn: Callable[[], None], on_done: Callable[[], None] | None = None) -> None:
        """Start an invocation now (call from the loop's thread)."""
        strand = _Strand(fn, on_done)
        self.spawned += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)

        def body() -> None:
            strand.go.acquire()
            try:
                fn()
            except BaseException as exc:  # re-raised in the loop's thread
                strand.error = exc
            strand.done = True
            self._back.release()

        strand.thread = threading.Thread(target=body, daemon=True)
        strand.thread.start()
        self._resume(strand)

    def pause(self, seconds: float) -> None:
        """The calling invocation waits ``seconds`` of virtual time."""
        if seconds <= 0:
            return
        strand = self.current
        wake = self.loop.now + seconds
        if strand is None:
            return  # outside an invocation (setup, the loop itself): free
        if self.loop.next_at() > wake:
            self.loop.advance(wake)  # nobody else acts meanwhile
            return
        self.loop.schedule(wake, lambda: self._resume(strand))
        self.current = None
        self._back.release()
        strand.go.acquire()
        self.current = strand

    def _resume(self, strand: _Strand) -> None:
        self.current = strand
        strand.go.release()
        self._back.acquire()
        self.current = None
        if strand.done:
            assert strand.thread is not None
            strand.thread.join()
            self.active -= 1
            if strand.error is not None:
                raise strand.error
            if strand.on_done is not None:
                strand.on_done()
