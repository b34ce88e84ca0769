"""The digit grids' fast drawing path draws exactly what rich draws, cell for cell."""

from __future__ import annotations

import pytest
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Span, Text

from gan_tui.data import load_bundled
from gan_tui.render import RENDER_MODES, grid_size, render_grid
from gan_tui.tui.strips import text_strips

BASE = Style(color="#e0e0e0", bgcolor="#1e1e1e")


def cells(lines: list[list[Segment]]) -> list[list[tuple[str, Style | None]]]:
    return [[(char, seg.style) for seg in line for char in seg.text] for line in lines]


def rich_lines(text: Text, width: int) -> list[list[Segment]]:
    console = Console(width=width, color_system="truecolor")
    return console.render_lines(text, console.options.update_width(width), style=BASE, pad=False)


@pytest.mark.parametrize("mode", RENDER_MODES)
@pytest.mark.parametrize("captions", [None, list("0123456")])
@pytest.mark.parametrize("narrower", [0, 7])
def test_digit_grids_draw_as_rich_draws_them(mode: str, captions, narrower: int) -> None:
    images = load_bundled().images[:7]
    text = render_grid(images, mode=mode, cols=4, captions=captions)
    width = grid_size(7, mode, 4, captions=captions is not None)[0] - narrower
    ours = text_strips(text, width, BASE, Console(color_system="truecolor"))
    assert ours is not None
    assert cells([list(strip) for strip in ours]) == cells(rich_lines(text, width))
    assert all(strip.cell_length <= width for strip in ours)


def test_texts_it_cannot_draw_are_left_to_rich() -> None:
    console = Console()
    overlapping = Text("abcdef", spans=[Span(0, 4, "red"), Span(2, 6, "bold")], no_wrap=True,
                       overflow="crop")
    styled = Text("abc", style="red", no_wrap=True, overflow="crop")
    wrapping = Text("abc")
    for text in (overlapping, styled, wrapping):
        assert text_strips(text, 10, BASE, console) is None
