"""The dashboard screen: header, progress, loss plot, digits and log around one run.

It drains the connection's events twice a second (at once for the events a key press
waits for), folds them into the `ViewState` and applies the resulting effects to the
widgets; keys become commands sent through the connection. Which connection it has (a
trainer in this process, or a run elsewhere) it does not know.
"""

from __future__ import annotations

import functools
import time
from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer

from gan_tui.events import Sample, Save
from gan_tui.tui.connection import Connection
from gan_tui.tui.screens import ConfirmStop, HelpScreen
from gan_tui.tui.timeline_view import Timeline
from gan_tui.tui.view import (
    DIGIT_KEYS_NEED_CGAN,
    Effect,
    LogLine,
    Notice,
    ShowQuality,
    ShowSamples,
    ViewState,
)
from gan_tui.tui.widgets import (
    DigitsColumn,
    DigitsPanel,
    HeaderBar,
    LogPanel,
    LossPlot,
    ProgressPanel,
    TooSmall,
)


@functools.cache
def is_conditional(preset: str) -> bool:
    """True for presets that draw a chosen digit (cgan); late import: models loads torch."""
    from gan_tui.models import PRESETS

    return preset in PRESETS and PRESETS[preset].conditional


class EventsReady(Message):
    """The connection has an event the user is waiting to see, or it is done."""


class Dashboard(Screen[None]):
    """One training run, live. Posts `Dashboard.Leave` once quitting is over."""

    # Screen classes for the layout: below 80 x 24 the dashboard gives way to a note.
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [
        (0, "-too-narrow"), (80, "-narrow"), (110, "-wide"),
    ]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [
        (0, "-too-short"), (24, "-short"), (30, "-medium"), (38, "-tall"),
    ]
    # (ctrl+c is the app's: it must quit even with the help screen open.)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_pause", "Pause/Resume", key_display="space"),
        Binding("p", "toggle_pause", "Pause/Resume", show=False),
        Binding("s", "save", "Save"),
        Binding("g", "sample", "Sample"),
        Binding("r", "cycle_renderer", "Render"),
        Binding("v", "toggle_plot", "Plot"),
        Binding("l", "toggle_log_y", "Log-y"),
        *(Binding(str(d), f"sample_digit({d})", f"Digit {d}", show=False) for d in range(10)),
        Binding("left", "timeline(-1)", "Earlier epoch", show=False),
        Binding("right", "timeline(1)", "Later epoch", show=False),
        Binding("home", "timeline_first", "First epoch", show=False),
        Binding("end", "timeline_live", "Live", show=False),
        Binding("d", "detach", "Detach"),
        Binding("x", "stop_run", "Stop run", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    # How often the routine events are drained and progress repainted (the loss plot
    # every other time). Key presses and samples do not wait for it.
    POLL_S: ClassVar[float] = 0.5
    QUIT_TIMEOUT_S: ClassVar[float] = 15.0  # give up waiting for the run to end after this

    class Leave(Message):
        """Quitting is over: the run has ended, or will not say so in time."""

    def __init__(self, connection: Connection, view: ViewState) -> None:
        super().__init__()
        self.connection = connection
        self.view = view
        self._hints_until: dict[Notice, float] = {}  # key hints on screen, until when
        self.timeline = Timeline()  # past epochs' grids, for left / right / home / end

    # ------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield ProgressPanel(id="progress")
                yield LossPlot(self.view.history, id="plot")
                yield LogPanel(id="log")
            with DigitsColumn(id="right"):
                yield DigitsPanel(id="digits")
        yield TooSmall(id="too-small")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ProgressPanel).border_title = "Progress"
        self._apply(self.view.opening())
        self._refresh_panels()
        self.set_interval(self.POLL_S, self._tick)
        opening = self.connection.start(self._wake)
        if opening:
            self.log_line(opening, "dim")

    def on_resize(self, event: events.Resize) -> None:
        # The event's size: it is the new one (issue #12: the note was one resize behind).
        self.query_one(TooSmall).show_size(event.size.width, event.size.height)

    # ------------------------------------------------------- events -> widgets

    def _wake(self) -> None:
        """Called on any thread; post_message is thread-safe and never waits for the UI."""
        self.post_message(EventsReady())

    def _tick(self) -> None:
        # One timer for every routine repaint: they land in one frame, one compositor pass.
        self.poll_events()
        self.query_one(LossPlot).tick(time.monotonic())

    def on_events_ready(self, _message: EventsReady) -> None:
        self.poll_events()
        if self.connection.done and self.view.quitting:
            self._leave()

    def poll_events(self) -> None:
        """Fold every pending event into the view state, then redraw what changed."""
        batch = self.connection.drain()
        if not batch:
            return
        self._apply(self.view.apply(batch))
        self._refresh_panels()

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, LogLine):
                self.log_line(effect.text, effect.style)
            elif isinstance(effect, Notice):
                self._notify(effect)
            elif isinstance(effect, ShowSamples):
                self._show_samples(effect)
            elif isinstance(effect, ShowQuality):
                self._show_quality(effect)

    def _notify(self, notice: Notice) -> None:
        # markup=False everywhere: a path like runs/[b]x[/b] must show as typed.
        self.app.notify(notice.message, title=notice.title, severity=notice.severity,
                        timeout=notice.timeout, markup=False)

    def _hint(self, notice: Notice) -> None:
        """A key's answer: one pop-up while it shows, however often the key is pressed
        (issue #12: ten digit presses stacked ten identical ones)."""
        now = time.monotonic()
        if self._hints_until.get(notice, 0.0) > now:
            return
        self._hints_until[notice] = now + notice.timeout
        self._notify(notice)

    def _show_samples(self, effect: ShowSamples) -> None:
        if effect.samples.fixed:
            self.timeline.record(effect.samples)
        if self.timeline.viewing is not None:
            self.timeline.live = effect  # shown again when the user returns to live
            if effect.samples.fixed:
                self._show_epoch(self.timeline.viewing)  # "epoch 2 of N": N grew
            return
        self._draw_samples(effect)

    def _draw_samples(self, effect: ShowSamples) -> None:
        digits = self.query_one(DigitsPanel)
        samples = effect.samples
        had_labels = digits.labels is not None
        digits.show(samples.images, effect.caption, samples.labels)
        if had_labels != (digits.labels is not None):
            digits.refresh(layout=True)  # a caption line per row changes the best width

    def _show_quality(self, effect: ShowQuality) -> None:
        self.query_one(ProgressPanel).show_quality(effect.quality, effect.note)
        if effect.quality is not None:
            self.query_one(DigitsPanel).show_classes(effect.quality.histogram)

    def _refresh_panels(self) -> None:
        self.query_one(HeaderBar).show(self.view.info, self.view.phase)
        self.query_one(ProgressPanel).show(self.view.progress, self.view.phase)

    def log_line(self, message: str, style: str = "") -> None:
        self.query_one(LogPanel).add(message, style)

    # ------------------------------------------------------------ actions

    def action_toggle_pause(self) -> None:
        if self._can_command():
            self.connection.send(self.view.pause_command())

    def action_save(self) -> None:
        if self._can_command():
            self.view.saving = True
            self.connection.send(Save())
            self._refresh_panels()

    def action_sample(self) -> None:
        if self._can_command():
            self.connection.send(Sample(count=16))

    def action_sample_digit(self, digit: int) -> None:
        """16 fresh samples of one digit, for presets conditioned on the class."""
        if not self._can_command():
            return
        if not is_conditional(self.view.config.preset):
            self._hint(Notice(DIGIT_KEYS_NEED_CGAN, timeout=5))
            return
        self.connection.send(Sample(count=16, digit=digit))

    def _can_command(self) -> bool:
        """True if commands reach a running trainer; otherwise say why not."""
        if self.connection.ready:
            return True
        self._hint(self.view.not_running_notice(starting=not self.connection.done))
        return False

    def action_timeline(self, step: int) -> None:
        """Step through past epochs' grids (the run's timeline); past the newest: live."""
        self.timeline.load(self.view.info.run_dir)
        target = self.timeline.step(step)
        if target is None:
            self.action_timeline_live()
        else:
            self._show_epoch(target)

    def action_timeline_first(self) -> None:
        self.timeline.load(self.view.info.run_dir)
        if self.timeline.epochs():
            self._show_epoch(self.timeline.epochs()[0])

    def action_timeline_live(self) -> None:
        if self.timeline.viewing is None:
            return
        self.timeline.viewing = None
        if self.timeline.live is not None:
            self._draw_samples(self.timeline.live)

    def _show_epoch(self, epoch: int) -> None:
        self.timeline.viewing = epoch
        images, labels = self.timeline.grids[epoch]
        newest = self.timeline.epochs()[-1]
        self.query_one(DigitsPanel).show(
            images, f"epoch {epoch} of {newest} · history, end: live", labels)

    def action_cycle_renderer(self) -> None:
        self.query_one(DigitsPanel).cycle_mode()

    def action_toggle_plot(self) -> None:
        plot = self.query_one(LossPlot)
        plot.mode = "d" if plot.mode == "loss" else "loss"

    def action_toggle_log_y(self) -> None:
        plot = self.query_one(LossPlot)
        plot.log_y = not plot.log_y

    def action_help(self) -> None:
        if not isinstance(self.app.screen, HelpScreen):
            self.app.push_screen(HelpScreen())

    def action_quit(self) -> None:
        self.request_quit()

    def request_quit(self, reason: str = "stop") -> None:
        """Ask the run to end (a local run saves last.pt first); leave once it has."""
        if self.view.quitting:
            return
        self.view.quitting = True
        if not self.connection.request_stop(reason):
            self._leave()
            return
        if self.view.diverged:
            self.log_line("Stopping; the diverged weights are not saved…", "bold")
        else:
            self.log_line("Saving last.pt before quitting…", "bold")
        self._refresh_panels()
        self.set_timer(self.QUIT_TIMEOUT_S, self._leave)

    def action_detach(self) -> None:
        """Let go of the run; it trains on (a run started here moves to the background)."""
        if self.view.quitting:
            return
        self.view.quitting = True
        if not self.connection.detach():
            self._leave()
            return
        self.log_line("Saving last.pt and carrying the run on in the background…", "bold")
        self._refresh_panels()
        self.set_timer(self.QUIT_TIMEOUT_S, self._leave)

    def action_stop_run(self) -> None:
        if self.view.quitting or not self._can_command():
            return

        def answered(stop: bool | None) -> None:
            if stop:
                self._stop_run()

        self.app.push_screen(ConfirmStop(self.view.info.run_name), answered)

    def _stop_run(self) -> None:
        self.view.quitting = True
        if not self.connection.stop_run():
            self._leave()
            return
        self.log_line("Stopping the run: saving last.pt…", "bold")
        self._refresh_panels()
        self.set_timer(self.QUIT_TIMEOUT_S, self._leave)

    def _leave(self) -> None:
        self.post_message(self.Leave())
