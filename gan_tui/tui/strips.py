"""Drawing rich renderables into Textual strips cheaply, on a UI thread that shares the
CPU with training.

Two costs are avoided. Textual turns a rich `Text` into its own `Content` span by span
(~80 ms for a 16-digit block grid with a colour per cell), and a widget re-renders its
content whenever its border title changes. `KeptVisual` draws once and keeps the strips;
`text_strips` draws the digit grids (one style per run of cells, nothing nested) straight
into segments, ~10x faster than rich's general text renderer.
"""

from __future__ import annotations

from itertools import islice

from rich.console import Console, RenderableType
from rich.segment import Segment
from rich.style import Style as RichStyle
from rich.text import Text
from textual.strip import Strip
from textual.style import Style as VisualStyle
from textual.visual import RenderOptions, RichVisual
from textual.widget import Widget


class KeptVisual(RichVisual):
    """A rich renderable drawn into strips once and reused until the widget replaces it."""

    def __init__(self, widget: Widget, renderable: RenderableType) -> None:
        super().__init__(widget, renderable)
        self._kept: tuple[tuple[object, ...], list[Strip]] | None = None

    def render_strips(self, width: int, height: int | None, style: VisualStyle,
                      options: RenderOptions) -> list[Strip]:
        key = (width, height, style)
        if self._kept is None or self._kept[0] != key:
            renderable = self._renderable
            strips = (text_strips(renderable, width, style.rich_style, self._widget.app.console)
                      if isinstance(renderable, Text) else None)
            if strips is None:
                strips = super().render_strips(width, height, style, options)
            self._kept = (key, list(islice(strips, height)))
        return self._kept[1]


def text_strips(text: Text, width: int, base: RichStyle, console: Console) -> list[Strip] | None:
    """A no-wrap, cropped Text as one strip per line, each span's style over `base`.

    Only for Texts without a style of their own and with spans that neither overlap nor
    come out of order (what `gan_tui.render` builds); None for any other, which rich
    should draw.
    """
    if text.style or not text.no_wrap or text.overflow != "crop" or not _runs_in_order(text):
        return None
    plain = text.plain
    lines: list[list[Segment]] = [[]]

    def put(start: int, end: int, style: RichStyle) -> None:
        pieces = plain[start:end].split("\n")
        for i, piece in enumerate(pieces):
            if i:
                lines.append([])
            if piece:
                lines[-1].append(Segment(piece, style))

    at = 0
    for span in text.spans:
        if span.start > at:
            put(at, span.start, base)
        style = span.style if isinstance(span.style, RichStyle) else console.get_style(span.style)
        put(span.start, span.end, base + style)
        at = span.end
    put(at, len(plain), base)
    strips = (Strip(segments) for segments in lines)
    return [strip.crop(0, width) if strip.cell_length > width else strip for strip in strips]


def _runs_in_order(text: Text) -> bool:
    at = 0
    for span in text.spans:
        if span.start < at or span.end < span.start:
            return False
        at = span.end
    return at <= len(text.plain)
