"""Screens pushed over the dashboard."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# The key table, as shown on the help screen and in the README.
KEY_HELP: tuple[tuple[str, str], ...] = (
    ("space / p", "Pause or resume (between two steps: the step counter stops)"),
    ("s", "Save a checkpoint now; a notice shows its path"),
    ("g", "Generate 16 fresh digits now (works while paused)"),
    ("0-9", "Sample 16 of that digit (conditional presets: --preset cgan)"),
    ("r", "Cycle the digit renderer: blocks, braille, ascii"),
    ("v", "Switch the plot: G/D loss or D(x)/D(G(z)) with the 0.5 line"),
    ("l", "Toggle a logarithmic y axis on the plot"),
    ("?", "Show or hide this help"),
    ("q / ctrl+c", "Save last.pt and quit; then print the command that resumes"),
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
