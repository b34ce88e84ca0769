"""The dashboard's panels. Each reads plain state and draws it; none knows the engine."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static
from textual_plotext import PlotextPlot

from gan_tui.events import Quality
from gan_tui.render import RENDER_MODES, render_grid, to_unit
from gan_tui.tui import pixels
from gan_tui.tui.scaling import MIN_PX, best_size, grid_cells, resize
from gan_tui.tui.state import History, Phase, Progress, RunInfo, ema, format_duration, thin
from gan_tui.tui.strips import KeptVisual

PlotMode = Literal["loss", "d"]
PIXELS = "pixels"  # the graphics-protocol renderer, where the terminal has one


class HeaderBar(Horizontal):
    """One line: what is training, where, and the state badge at the right."""

    _shown: tuple[RunInfo, Phase] | None = None

    def compose(self) -> ComposeResult:
        yield Static("gan-tui", id="title")
        yield Static("", id="run-info")
        yield Static(Phase.STARTING.value, id="badge", classes="-starting")

    def show(self, info: RunInfo, phase: Phase) -> None:
        if self._shown == (info, phase):
            return  # called at every poll; updating a Static costs a layout pass
        self._shown = (info, phase)
        images = f" · {info.num_images:,} images" if info.num_images else ""
        text = f"{info.run_name} · {info.preset} · {info.device} · {info.dataset}{images}"
        self.query_one("#run-info", Static).update(Text(text, overflow="ellipsis", no_wrap=True))
        badge = self.query_one("#badge", Static)
        badge.update(f" {phase.value} ")
        badge.set_classes(f"-{phase.value.lower()}")


class ProgressPanel(Widget):
    """Epoch and batch bars with counts, speed, elapsed time and ETAs, and the latest
    sample-quality scores."""

    # No links to highlight: skips a per-segment pass over every redrawn line.
    auto_links = reactive(False)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._progress: Progress | None = None
        self._phase = Phase.STARTING
        self._quality: Quality | None = None
        self._quality_note = QUALITY_PENDING

    def show(self, progress: Progress | None, phase: Phase) -> None:
        self._progress, self._phase = progress, phase
        self.refresh()  # a repaint only: the panel's size never depends on its content

    def show_quality(self, quality: Quality | None, note: str = "") -> None:
        """The latest scores; `note` says why there are none (yet)."""
        self._quality, self._quality_note = quality, note or QUALITY_PENDING
        self.refresh()

    def render(self) -> RenderableType:
        if self._progress is None:
            return self._waiting(self._phase)
        width = self.content_size.width
        quality = quality_line(self._quality, width, self._quality_note)
        return Group(self._table(self._progress, self._phase, width), quality)

    @staticmethod
    def _waiting(phase: Phase) -> Text:
        if phase is Phase.STARTING:
            return Text("Loading the data and building the models…", style="italic")
        return Text("No training statistics yet.", style="italic")

    @staticmethod
    def _table(p: Progress, phase: Phase, width: int) -> Group:
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column("label", no_wrap=True, style="bold")
        grid.add_column("count", justify="right", no_wrap=True)
        grid.add_column("bar", ratio=1)
        grid.add_column("eta", justify="right", no_wrap=True)
        grid.add_row("Epoch", f"{p.epochs_done}/{p.epochs}", _bar(p.epochs_done, p.epochs),
                     f"ETA {format_duration(p.eta_s())}")
        grid.add_row("Batch", f"{p.batch}/{p.steps_per_epoch}", _bar(p.batch, p.steps_per_epoch),
                     f"ETA {format_duration(p.epoch_eta_s())}")
        return Group(grid, _speed_line(p, phase, width))


QUALITY_PENDING = "quality scores after each epoch"


def quality_line(quality: Quality | None, width: int, note: str = QUALITY_PENDING) -> Text:
    """Digit FID with real digits' FID beside it, IS, coverage (and confidence where it
    fits) on one line of `width`."""
    if quality is None:
        return Text(note, style="italic dim", no_wrap=True, overflow="ellipsis")
    variants = [_quality_text(quality, confidence=True), _quality_text(quality),
                _quality_text(quality, short_floor=True), _quality_text(quality, short=True)]
    for text in variants:
        if text.cell_len <= width:
            return text
    return variants[-1]


def _quality_text(q: Quality, confidence: bool = False, short: bool = False,
                  short_floor: bool = False) -> Text:
    # Coverage is the collapse warning: 1.0 means every digit is drawn equally often.
    coverage_style = "green" if q.coverage >= 0.95 else "yellow" if q.coverage >= 0.8 else "red"
    fid = f"{q.fid:.2f}"
    if q.floor > 0:  # what real digits score: a FID means little without it
        short_floor = short_floor or short
        fid += f" (real {q.floor:.1f})" if short_floor else f" (real vs real {q.floor:.2f})"
    items = [("FID", fid, "bold"), ("IS", f"{q.score:.2f}", "bold"),
             ("cov" if short else "coverage", f"{q.coverage:.{2 if short else 3}f}",
              coverage_style)]
    if confidence:
        items.append(("conf", f"{q.confidence:.2f}", "bold"))
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, (label, value, style) in enumerate(items):
        text.append(" · " if i else "", style="dim")
        text.append(f"{label} ")
        text.append(value, style=style)
    return text


def class_bars(histogram: Sequence[int], spaced: bool = False) -> Text:
    """The predicted-class histogram as ten labelled block bars: `0▂1▇2▅…9▄`.

    Scaled to the largest class; any digit drawn at all gets at least the lowest bar,
    and a digit never drawn (mode collapse) shows a red label over no bar.
    """
    top = max(max(histogram, default=0), 1)
    text = Text(no_wrap=True)
    for digit, count in enumerate(histogram):
        level = math.ceil(count / top * len(_BARS))
        text.append(" " if spaced and digit else "")
        text.append(str(digit), style="red" if count == 0 else "dim")
        text.append(_BARS[level - 1] if level else " ", style="cyan")
    return text


_BARS = "▁▂▃▄▅▆▇█"


def _speed_line(p: Progress, phase: Phase, width: int) -> Text:
    # The last speed is stale once training halts; say why nothing moves instead.
    rate = {Phase.PAUSED: ("paused", "yellow"), Phase.DONE: ("done", "green"),
            Phase.STOPPED: ("stopped", ""), Phase.ERROR: ("stopped", "red"),
            Phase.DIVERGED: ("diverged", "red"),
            Phase.MOVED: ("training on in the background", "green")}.get(
        phase, (f"{p.img_per_s:,.0f} img/s", "bold"))
    line = Text.assemble(rate, " · step ", (f"{p.global_step:,}", "bold"), " · ",
                         (format_duration(p.elapsed_s), "bold"), no_wrap=True,
                         overflow="ellipsis")
    if line.cell_len + len(" elapsed") <= width:  # the label only where it fits
        line.append(" elapsed")
    return line


def _bar(completed: float, total: float) -> ProgressBar:
    # Named ANSI styles survive 16-colour terminals; rich's default pinks do not.
    return ProgressBar(total=max(total, 1), completed=completed, style="bright_black",
                       complete_style="cyan", finished_style="green")


class LossPlot(PlotextPlot):
    """G/D loss (or D(x)/D(G(z))) per step, smoothed and thinned to the widget's width.

    Redrawing a plotext figure costs ~10 ms of the CPU training runs on, so it happens
    at most once a second (the app's UI tick calls `tick`, so the plot is repainted in
    the same frame as the progress panel), and only when the data, the size or the view
    changed since the last drawing. Switching the view (v, l) redraws at once.
    """

    auto_links = reactive(False)

    REDRAW_S: ClassVar[float] = 1.0

    mode: reactive[PlotMode] = reactive("loss", init=False)
    log_y: reactive[bool] = reactive(False, init=False)

    def __init__(self, history: History, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.history = history
        self._drawn: tuple[object, ...] | None = None
        self._figure: tuple[object, KeptVisual] | None = None  # the last drawn figure
        self._redrawn_at = -math.inf

    def on_mount(self) -> None:
        super().on_mount()
        self._update_titles()

    def tick(self, now: float) -> None:
        """Redraw if stale and the last redraw is `REDRAW_S` old (`now`: monotonic s)."""
        # Timers fire up to a few ms early: two 0.5 s ticks must count as a second.
        if now - self._redrawn_at >= self.REDRAW_S * 0.9 and self.redraw_if_stale():
            self._redrawn_at = now

    def watch_mode(self) -> None:
        self._update_titles()
        self.redraw_if_stale()

    def watch_log_y(self) -> None:
        self._update_titles()
        self.redraw_if_stale()

    def _update_titles(self) -> None:
        if self.mode == "loss":
            self.border_title = "Loss per step · G and D (smoothed)"
        else:
            self.border_title = "D(x) and D(G(z)) · 0.5 = balance"
        self.border_subtitle = f"v switch · l log-y {'on' if self.log_y else 'off'}"

    def redraw_if_stale(self) -> bool:
        """Redraw now if the data, size or view changed since the last drawing."""
        key = (self.history.version, self.size, self.mode, self.log_y)
        if key == self._drawn or self.size.width <= 8 or self.size.height <= 4:
            return False
        self._drawn = key
        self._replot()
        self.refresh()
        return True

    def render(self) -> RenderResult:
        # Build the figure once per redraw, not again when only a border title changed.
        key = (self._drawn, self.size, self.app.theme, self.theme)
        if self._figure is None or self._figure[0] != key:
            self._figure = (key, KeptVisual(self, super().render()))
        return self._figure[1]

    def _replot(self) -> None:
        plt = self.plt
        plt.clear_figure()
        history = self.history
        # Braille markers give two points per cell; the frame and y labels take ~10 cells.
        buckets = max(2 * (self.size.width - 10), 2)
        if self.mode == "loss":
            series = [("G", history.g_loss, "cyan"), ("D", history.d_loss, "magenta")]
        else:
            series = [("D(x)", history.d_real, "green"), ("D(G(z))", history.d_fake, "yellow")]
        plotted = False
        for label, values, color in series:
            xs, ys = thin(history.steps, values, buckets)
            ys = ema(ys, alpha=0.3)
            xs, ys = _plottable(xs, ys, self.log_y)
            if xs:  # the legend carries the latest raw value
                plt.plot(xs, ys, label=f"{label} {values[-1]:.3f}", color=color,
                         marker="braille")
                plotted = True
        if len(history) and not plotted:  # e.g. a run that diverged at once: all NaN
            plt.title("no finite values to plot")
        if self.mode == "d":
            plt.hline(0.5, "gray")
            if not self.log_y:
                plt.ylim(0, 1)
        if self.log_y:
            plt.yscale("log")
        if len(history):
            count = max(2, (self.size.width - 6) // 10)  # a label every ~10 cells
            plt.xticks(*step_ticks(history.steps[0], history.steps[-1], count))
        else:
            plt.title("waiting for the first steps")
        plt.xlabel("step")


def step_ticks(lo: float, hi: float, count: int = 5) -> tuple[list[float], list[str]]:
    """About `count` round step numbers for the x axis (1, 2 or 5 times a power of ten apart)."""
    if hi <= lo:
        return [lo], [_step_label(lo)]
    magnitude = 10 ** math.floor(math.log10((hi - lo) / max(count, 1)))
    candidates = [max(m * magnitude, 1) for m in (1, 2, 5, 10, 20)]

    def ticks_for(spacing: float) -> list[float]:
        first = math.ceil(lo / spacing) * spacing
        return [first + i * spacing for i in range(int((hi - first) // spacing) + 1)]

    ticks = min((ticks_for(c) for c in candidates), key=lambda t: (abs(len(t) - count), len(t)))
    thousands = ticks[-1] >= 10_000  # one style per axis: "5k 10k", not "5,000 10k"
    return ticks, [_step_label(t, thousands) for t in ticks]


def _step_label(step: float, thousands: bool = False) -> str:
    if thousands and step:
        return f"{step / 1000:,.1f}".removesuffix(".0") + "k"  # 10,500 is 10.5k, not 10k
    return f"{step:,.0f}"


def _plottable(xs: list[float], ys: list[float], log_y: bool) -> tuple[list[float], list[float]]:
    """Drop points plotext cannot draw: non-finite, and non-positive on a log axis."""
    keep = [(x, y) for x, y in zip(xs, ys, strict=True)
            if math.isfinite(y) and (y > 0 or not log_y)]
    return [x for x, _ in keep], [y for _, y in keep]


class DigitsPanel(Widget):
    """The 4 x 4 grid of generated digits, as large as the panel's height allows.

    The panel asks for the width of the biggest grid that fits its height (up to
    half the screen, by CSS), so the plot on the left gets the rest.
    """

    auto_links = reactive(False)

    mode: reactive[str] = reactive(RENDER_MODES[0], layout=True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.images: np.ndarray | None = None
        self.labels: list[str] | None = None  # a class under each digit (conditional presets)
        self.caption = "waiting"
        self.classes_seen: tuple[int, ...] | None = None  # predicted-class histogram
        self._grid_cache: tuple[tuple[object, ...], KeptVisual] | None = None

    def on_mount(self) -> None:
        self._update_titles()

    def on_resize(self) -> None:
        self._update_titles()  # the subtitle says as much as the new width allows

    def show(self, images: np.ndarray, caption: str,
             labels: tuple[int, ...] | None = None) -> None:
        self.images = to_unit(images)  # [0, 1] once, so shrinking keeps the range
        self.labels = [str(label) for label in labels] if labels else None
        self.caption = caption
        self._update_titles()
        self._show_pixels()
        self.refresh()

    @property
    def pixels(self) -> str | None:
        """The terminal's graphics protocol, if it has one (the app detected it)."""
        return getattr(self.app, "pixels", None)

    @property
    def modes(self) -> tuple[str, ...]:
        """What `r` cycles through: the text renderers, and real pixels where they show."""
        return (*RENDER_MODES, PIXELS) if self.pixels else RENDER_MODES

    def cycle_mode(self) -> str:
        modes = list(self.modes)
        at = modes.index(self.mode) if self.mode in modes else -1
        self.mode = modes[(at + 1) % len(modes)]
        return self.mode

    def watch_mode(self) -> None:
        self._update_titles()
        self._show_pixels()

    def _show_pixels(self) -> None:
        """In pixels mode a textual-image widget inside the panel draws the grid."""
        shown = list(self.query("#pixels"))
        if self.mode != PIXELS or self.images is None or not self.pixels:
            for widget in shown:
                widget.remove()
            return
        image = pixels.grid_image(self.images)
        if shown:
            shown[0].image = image
        else:
            self.mount(pixels.widget_class(self.pixels)(image, id="pixels"))

    def show_classes(self, histogram: Sequence[int]) -> None:
        """How often the quality classifier saw each digit in the last epoch's samples."""
        self.classes_seen = tuple(histogram)
        self._update_titles()

    def _update_titles(self) -> None:
        self.border_title = f"Digits · {self.caption}"
        self.border_subtitle = self._subtitle(self.outer_size.width - 4)  # corners, spaces

    def _subtitle(self, width: int) -> Text:
        """The class bars (as spacious as fit) and the renderer key, in the bottom border."""
        key = Text(f"r {self.mode}")
        if self.classes_seen is None:
            return key
        variants = [Text.assemble("classes ", class_bars(self.classes_seen, spaced), " · ", key)
                    for spaced in (True, False)]
        variants.append(Text.assemble(class_bars(self.classes_seen), " · ", key))
        variants.append(class_bars(self.classes_seen))
        return next((text for text in variants if text.cell_len <= width), variants[-1])

    def get_content_width(self, container: Size, viewport: Size) -> int:
        height = container.height - self.styles.gutter.height
        captions = self._captions_fit(height)
        px = best_size(self._text_mode, container.width, height, captions=captions)
        return grid_cells(self._text_mode, px, captions=captions)[0]

    @property
    def _text_mode(self) -> str:
        """The renderer whose layout the panel takes (pixels: as large as blocks)."""
        return "blocks" if self.mode == PIXELS else self.mode

    def _captions_fit(self, height: int) -> bool:
        """A class under each digit, unless even the smallest captioned grid is too tall
        (blocks at 80 x 24): then the digits keep their rows and the captions go."""
        return (self.labels is not None and self.mode != PIXELS
                and grid_cells(self.mode, MIN_PX, captions=True)[1] <= height)

    def render(self) -> RenderResult:
        width, height = self.content_size
        if self.images is None:
            return Text("The fixed-noise digits appear after the first epoch.\n\n"
                        "Press g for fresh ones now.", style="italic", justify="center")
        if self.mode == PIXELS:
            return Text()  # the #pixels child draws them
        key = (id(self.images), self.mode, width, height)
        if self._grid_cache is None or self._grid_cache[0] != key:
            captions = self.labels if self._captions_fit(height) else None
            px = best_size(self.mode, width, height, n=len(self.images),
                           captions=captions is not None)
            grid = render_grid(resize(self.images, px), mode=self.mode, cols=4, max_width=width,
                               captions=captions)
            self._grid_cache = (key, KeptVisual(self, grid))
        return self._grid_cache[1]


class DigitsColumn(Vertical):
    """The digits panel's own container, as wide as the panel wants to be.

    Textual repaints every widget whose container overlaps a changed region; in the
    body's container the digits were recomposed at every progress tick.
    """

    def get_content_width(self, container: Size, viewport: Size) -> int:
        digits = self.query_one(DigitsPanel)
        gutter = digits.styles.gutter
        return digits.get_content_width(container - gutter.totals, viewport) + gutter.width


class LogPanel(Widget):
    """The seed's epoch lines, checkpoint notices and errors; the newest at the bottom.

    It keeps its own lines and wraps them at draw time, so they re-flow when the
    terminal is resized (RichLog wraps once, at the width it had when written).
    """

    auto_links = reactive(False)

    def __init__(self, max_lines: int = 500, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.lines: deque[Text] = deque(maxlen=max_lines)

    def on_mount(self) -> None:
        self.border_title = "Log"

    def add(self, message: str, style: str = "") -> None:
        self.lines.append(Text(message, style=style))
        self.refresh()

    def render(self) -> RenderableType:
        width, height = self.content_size.width, self.content_size.height
        if width <= 0 or height <= 0:
            return Text()
        shown: list[Text] = []
        for line in reversed(self.lines):  # wrap from the newest until the panel is full
            wrapped = line.wrap(self.app.console, width, overflow="fold")
            shown[:0] = list(wrapped)
            if len(shown) >= height:
                break
        return Text("\n").join(shown[-height:])


class TooSmall(Static):
    """Shown instead of the dashboard when the terminal is below 80 x 24."""

    def show_size(self, width: int, height: int) -> None:
        self.update(
            f"gan-tui needs at least 80 x 24 cells (this terminal: {width} x {height}).\n\n"
            "Training goes on. Enlarge the window to see it, or press q to save and quit."
        )
