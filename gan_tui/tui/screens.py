"""Screens pushed over the dashboard."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

# The key table, as shown on the help screen and in the README.
KEY_HELP: tuple[tuple[str, str], ...] = (
    ("space / p", "Pause or resume (between two steps: the step counter stops)"),
    ("s", "Save a checkpoint now; a notice shows its path"),
    ("g", "Generate 16 fresh digits now (works while paused)"),
    ("0-9", "Sample 16 of that digit (conditional presets: --preset cgan or sngan)"),
    ("r", "Cycle the digit renderer: blocks, braille, ascii, and pixels where the terminal "
     "shows images (sixel, kitty)"),
    ("left / right", "Step through past epochs' digits (the run's timeline); home: the "
     "first, end: back to live"),
    ("v", "Switch the plot: G/D loss or D(x)/D(G(z)) with the 0.5 line"),
    ("l", "Toggle a logarithmic y axis on the plot"),
    ("d", "Detach: training goes on in the background; gan-tui attach brings it back"),
    ("x", "Stop the run itself (asks first): save last.pt and end training"),
    ("?", "Show or hide this help"),
    ("q / ctrl+c", "Quit: a run started here saves last.pt and stops (then prints how to "
     "resume); an attached viewer only detaches"),
)

ABOUT = (
    "gan-tui trains the classic MLP GAN on handwritten digits. The discriminator D "
    "learns to tell real digits (D(x) near 1) from generated ones (D(G(z)) near 0); "
    "the generator G learns to fool it. When both hover around 0.5, D can no longer "
    "tell them apart.\n"
    "Each epoch: digit FID (lower is better), IS (higher) and coverage (1 = all ten digits "
    "drawn equally often); the bars under the digits count each digit drawn."
)


def key_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for keys, text in KEY_HELP:
        table.add_row(keys, text)
    return table


class HelpScreen(ModalScreen[None]):
    """The key table and a few words on what the plots mean."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),  # q leaves help first, like less(1)
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help") as box:
            yield Static(key_table(), id="help-keys")
            yield Static(Text(ABOUT, style="italic"), id="help-about")
        box.border_title = "Keys"
        box.border_subtitle = "escape, ? or q to close"


class ConfirmStop(ModalScreen[bool]):
    """Stopping a run is not undone by a key: ask first (y / enter, n / escape)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Stop it"),
        Binding("enter", "answer(True)", "Stop it", show=False),
        Binding("n", "answer(False)", "Keep training"),
        Binding("escape", "answer(False)", "Keep training", show=False),
    ]

    def __init__(self, run_name: str) -> None:
        super().__init__()
        self.run_name = run_name

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(f"Stop {self.run_name}? It saves last.pt and ends training; "
                         "gan-tui train --resume continues it later.", id="confirm-text")
            with Horizontal(id="confirm-buttons"):
                yield Button("Stop it (y)", variant="error", id="yes")
                yield Button("Keep training (n)", variant="primary", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, stop: bool) -> None:
        self.dismiss(stop)
