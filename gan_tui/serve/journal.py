"""What a viewer that attaches late is shown first: the run so far, as events.

The journal keeps, in the order they happened, every event a dashboard folds into
its state, with two kinds thinned so memory stays bounded over a long run: step
statistics (the loss curve) are halved by keeping every other one whenever they pass
`max_stats`, and only the newest sample grid of each kind is kept. Replaying the
journal through the dashboard's reducer rebuilds the same screen as having watched.
"""

from __future__ import annotations

import threading

from gan_tui.events import Event, Paused, Resumed, Samples, Started, StepStats

DEFAULT_MAX_STATS = 4_000  # loss-curve points: more than any plot is wide
DEFAULT_MAX_OTHER = 20_000  # epoch ends, scores, saves, notices: a long run's worth


class Journal:
    """Thread-safe: the training thread adds, the server thread takes snapshots."""

    def __init__(self, max_stats: int = DEFAULT_MAX_STATS,
                 max_other: int = DEFAULT_MAX_OTHER) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._stats = 0
        self._max_stats = max_stats
        self._max_other = max_other

    def add(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, Samples):
                self._drop_samples(fixed=event.fixed)
            elif isinstance(event, Resumed):
                self._events = [e for e in self._events if not isinstance(e, Paused)]
            self._events.append(event)
            if isinstance(event, StepStats):
                self._stats += 1
                if self._stats > self._max_stats:
                    self._halve_stats()
            elif len(self._events) - self._stats > self._max_other:
                self._drop_oldest_other()

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def _drop_samples(self, fixed: bool) -> None:
        self._events = [e for e in self._events
                        if not (isinstance(e, Samples) and e.fixed == fixed)]

    def _halve_stats(self) -> None:
        kept: list[Event] = []
        seen = 0
        for event in self._events:
            if isinstance(event, StepStats):
                seen += 1
                if seen % 2 == 1 and seen != self._stats:  # always keep the newest
                    continue
            kept.append(event)
        self._events = kept
        self._stats = sum(isinstance(e, StepStats) for e in kept)

    def _drop_oldest_other(self) -> None:
        # Started says what the run is: keep it (it need not be the first event).
        for index, event in enumerate(self._events):
            if not isinstance(event, (StepStats, Started)):
                del self._events[index]
                return
