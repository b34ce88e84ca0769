"""Which past epoch's digits the dashboard shows: the run's timeline, as the viewer
knows it (the grids it saw live, and the epochs before it came, read back from the
run's samples/timeline.bin). No Textual here."""

from __future__ import annotations

import numpy as np

from gan_tui import timeline
from gan_tui.events import Samples
from gan_tui.tui.view import ShowSamples


class Timeline:
    """The fixed-noise grids of past epochs (seen live, or read back from the run's
    samples/timeline.bin) and which one is shown (None: live)."""

    def __init__(self) -> None:
        self.grids: dict[int, tuple[np.ndarray, tuple[int, ...] | None]] = {}
        self.viewing: int | None = None
        self.live: ShowSamples | None = None
        self._labels: tuple[int, ...] | None = None
        self._loaded_from = ""

    def record(self, samples: Samples) -> None:
        self.grids[samples.epoch + 1] = (samples.images, samples.labels)
        self._labels = samples.labels

    def load(self, run_dir: str) -> None:
        """Add the epochs before this viewer came (a resumed or attached run), once."""
        if not run_dir or run_dir == self._loaded_from:
            return
        self._loaded_from = run_dir
        for epoch, images in timeline.read(timeline.path_in(run_dir)).items():
            self.grids.setdefault(epoch, (images, self._labels))

    def epochs(self) -> list[int]:
        return sorted(self.grids)

    def step(self, step: int) -> int | None:
        """The epoch `step` away from the one shown (from live: the newest); None = live."""
        epochs = self.epochs()
        if not epochs:
            return None
        if self.viewing is None:
            return epochs[-1] if step < 0 else None
        index = epochs.index(self.viewing) + step if self.viewing in epochs else len(epochs)
        return epochs[max(index, 0)] if index < len(epochs) else None
