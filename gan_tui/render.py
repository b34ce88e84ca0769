"""Digits as terminal text: image arrays -> rich ``Text`` in three modes.

* ``blocks`` (default): one half-block cell per 1 x 2 pixels, the top pixel as the
  foreground colour and the bottom pixel as the background, in true grey levels.
  Where a terminal has only 256 or 16 colours, rich's console picks the nearest
  grey the palette has when it prints, so nothing here depends on the terminal.
* ``braille``: one braille cell per 2 x 4 pixels, one dot per pixel, after
  Atkinson error diffusion (see ``dither``). No colour, so it reads on light and
  dark themes alike.
* ``ascii``: one plain ASCII character per 1 x 2 pixels from a brightness ramp,
  for logs and terminals without Unicode.

All functions are pure and vectorised over the batch; the TUI redraws a grid of
16 digits every epoch. Inputs are N x H x W (or H x W, or N x 1 x H x W) arrays
in [-1, 1] or [0, 1] (uint8 0..255 also works). Every mode works from the same
8-bit quantised image, so an image in [-1, 1] and the same image in [0, 1] give
identical output. This module must not import Textual.

Two rich behaviours callers should know: `Console.print` ignores a Text's own
``no_wrap`` (pass ``no_wrap=True`` there, or a ``max_width`` that fits), and rich
memoises each Style's escape codes for the first colour system that prints it,
so within one process print to one colour system.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from rich.cells import cell_len
from rich.color import Color
from rich.style import Style
from rich.text import Span, Text

RENDER_MODES: tuple[str, ...] = ("blocks", "braille", "ascii")
DIGIT_SHAPE: tuple[int, int] = (28, 28)

UPPER_HALF = "\u2580"  # '▀': foreground paints the top half, background the bottom
BRAILLE_BASE = 0x2800
# Braille dot bits by (row, column) inside a 2 x 4 cell (Unicode dots 1-8).
BRAILLE_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int32)
# Paul Bourke's short ramp, dark to bright (for light text on a dark terminal).
ASCII_RAMP = " .:-=+*#%@"

DITHER_METHODS: tuple[str, ...] = ("atkinson", "floyd-steinberg")
# (dy, dx, weight) of each neighbour that receives part of a pixel's error.
_KERNELS: dict[str, tuple[tuple[int, int, float], ...]] = {
    # Atkinson passes on only 6/8 of the error: strokes stay crisp and faint
    # noise does not turn into scattered dots, which reads best at 28 x 28.
    "atkinson": tuple(
        (dy, dx, 1 / 8) for dy, dx in ((0, 1), (0, 2), (1, -1), (1, 0), (1, 1), (2, 0))
    ),
    # Floyd-Steinberg keeps the mean tone exactly, at the cost of speckle.
    "floyd-steinberg": ((0, 1, 7 / 16), (1, -1, 3 / 16), (1, 0, 5 / 16), (1, 1, 1 / 16)),
}

_CELL_PIXELS = {"blocks": (1, 2), "braille": (2, 4), "ascii": (1, 2)}  # (w, h) per cell
_BRAILLE_CHARS = np.array([chr(BRAILLE_BASE + i) for i in range(256)])
_RAMP_CHARS = np.array(list(ASCII_RAMP))
_GREYS = tuple(Color.from_rgb(v, v, v) for v in range(256))


# ----------------------------------------------------------------- values


def to_unit(images: np.ndarray) -> np.ndarray:
    """Images in [-1, 1] or [0, 1] (or uint8) -> float32 in [0, 1], same shape.

    Any value below 0 means the whole array is in [-1, 1] (a tanh generator's
    output); deciding per array, not per image, keeps a batch consistent.
    NaN (a diverged model) becomes black rather than an exception.
    """
    a = np.asarray(images)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255)
    a = a.astype(np.float32)
    if (a < 0).any():
        a = (a + 1) * np.float32(0.5)
    a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(a, 0, 1, out=a)


def to_gray8(images: np.ndarray) -> np.ndarray:
    """Images -> uint8 grey levels 0..255: the exact levels every mode draws."""
    return np.rint(to_unit(images) * 255).astype(np.uint8)


def _as_batch(images: np.ndarray) -> np.ndarray:
    """Any accepted input -> uint8 array N x H x W."""
    a = np.asarray(images)
    if a.ndim == 4 and a.shape[1] == 1:  # N x 1 x H x W, as torchvision has it
        a = a[:, 0]
    elif a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(
            f"expected images of shape N x H x W (or H x W), got shape {tuple(a.shape)}"
        )
    return to_gray8(a)


def _check_mode(mode: str) -> str:
    if mode not in RENDER_MODES:
        raise ValueError(f"unknown render mode {mode!r}; choose one of: {', '.join(RENDER_MODES)}")
    return mode


# ------------------------------------------------------------------ sizes


def digit_size(mode: str, shape: tuple[int, int] = DIGIT_SHAPE) -> tuple[int, int]:
    """(width, height) in terminal cells of one image of `shape` (H, W)."""
    px_w, px_h = _CELL_PIXELS[_check_mode(mode)]
    return math.ceil(shape[1] / px_w), math.ceil(shape[0] / px_h)


def grid_size(
    n: int, mode: str, cols: int, captions: bool = False, shape: tuple[int, int] = DIGIT_SHAPE
) -> tuple[int, int]:
    """(width, height) in cells of `render_grid` for n images in `cols` columns."""
    _check_cols(cols)
    if n <= 0:
        return 0, 0
    w, h = digit_size(mode, shape)
    c = min(cols, n)
    rows = math.ceil(n / c)
    return c * w + (c - 1), rows * (h + int(captions)) + (rows - 1)


def fit_columns(
    n: int, mode: str, cols: int, max_width: int, shape: tuple[int, int] = DIGIT_SHAPE
) -> int:
    """The most columns (<= cols, >= 1) whose grid fits in max_width cells.

    Never less than 1: a single digit wider than max_width is left for the
    caller (or the terminal) to crop.
    """
    _check_cols(cols)
    w, _ = digit_size(mode, shape)
    fitting = (max_width + 1) // (w + 1)  # c digits need c * w + (c - 1) cells
    return max(1, min(cols, max(n, 1), fitting))


def _check_cols(cols: int) -> None:
    if cols < 1:
        raise ValueError(f"cols must be at least 1, got {cols}")


# ---------------------------------------------------------------- dither


@lru_cache(maxsize=16)
def _wave_layout(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index maps for the wavefront dither of an h x w image (see `dither`)."""
    ys, xs = np.mgrid[0:h, 0:w]
    waves = ys * 2 + xs
    valid = np.zeros((w + 2 * h + 4, h + 2), dtype=np.float32)
    valid[waves, ys] = 1
    return ys, waves, valid


def dither(images: np.ndarray, method: str = "atkinson") -> np.ndarray:
    """Error-diffusion dither: images -> bool array of the same shape, True = dot.

    This is the exact bitmap the braille mode draws, one dot per pixel.
    Error diffusion (not a threshold) keeps grey stroke edges as a sprinkling of
    dots instead of dropping them, and (unlike ordered dithering) adds no
    regular pattern to 28 x 28 digits.
    """
    try:
        kernel = _KERNELS[method]
    except KeyError:
        raise ValueError(
            f"unknown dither method {method!r}; choose one of: {', '.join(DITHER_METHODS)}"
        ) from None
    a = np.asarray(images)
    batch = _as_batch(a)
    n, h, w = batch.shape
    # Raster-order error diffusion is sequential, but every pixel only feeds
    # pixels with a larger t = x + 2y (true for both kernels), so all pixels of
    # one "wave" t can be done at once. Skewing the image so wave t is row t of
    # `buf` (buf[t, y] = pixel (y, t - 2y)) makes every neighbour a plain
    # shifted slice: ~82 vectorised steps for 28 x 28 instead of 784 x N.
    ys, waves, valid = _wave_layout(h, w)
    buf = np.zeros((w + 2 * h + 4, h + 2, n), dtype=np.float32)
    buf[waves, ys] = batch.transpose(1, 2, 0)
    dots = np.zeros((w + 2 * h + 4, h, n), dtype=bool)
    for t in range(w + 2 * h - 2):
        v = buf[t, :h]
        on = v > 127.5
        dots[t] = on
        # Slots outside the image pass nothing on: their "error" is discarded.
        err = (v - on * np.float32(255)) * valid[t, :h, None]
        for dy, dx, weight in kernel:
            buf[t + dx + 2 * dy, dy : dy + h] += err * np.float32(weight)
    out = dots[waves, ys].transpose(2, 0, 1)
    return out if a.ndim == 3 else out.reshape(a.shape)


# ------------------------------------------------------------------ cells
# Each mode turns a uint8 batch N x H x W into characters N x h x w ('<U1') and
# style keys N x h x w (top * 256 + bottom, -1 = unstyled), or None when unstyled.


def _pad_to(batch: np.ndarray, px_w: int, px_h: int) -> np.ndarray:
    """Pad with black so H and W are multiples of the cell's pixel size."""
    _, h, w = batch.shape
    return np.pad(batch, ((0, 0), (0, -h % px_h), (0, -w % px_w)))


def _block_cells(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = _pad_to(batch, 1, 2)
    top, bottom = b[:, 0::2].astype(np.int32), b[:, 1::2].astype(np.int32)
    # Where both halves match, a space (background only) avoids the thin seams
    # some fonts leave around block glyphs.
    chars = np.where(top == bottom, " ", UPPER_HALF)
    return chars, top * 256 + bottom


def _braille_cells(batch: np.ndarray) -> tuple[np.ndarray, None]:
    dots = _pad_to(dither(batch), 2, 4)
    n, h, w = dots.shape
    cells = dots.reshape(n, h // 4, 4, w // 2, 2).transpose(0, 1, 3, 2, 4)
    codes = (cells * BRAILLE_BITS).sum(axis=(3, 4))
    return _BRAILLE_CHARS[codes], None


def _ascii_cells(batch: np.ndarray) -> tuple[np.ndarray, None]:
    b = _pad_to(batch, 1, 2).astype(np.int32)
    pair_sum = b[:, 0::2] + b[:, 1::2]  # 0..510, the mean of the vertical pair x 2
    # Equal-width brightness bins: a brighter pair never gets a lighter character.
    index = np.minimum(pair_sum * len(ASCII_RAMP) // 511, len(ASCII_RAMP) - 1)
    return _RAMP_CHARS[index], None


_CELLS = {"blocks": _block_cells, "braille": _braille_cells, "ascii": _ascii_cells}


@lru_cache(maxsize=1 << 16)
def _block_style(key: int) -> Style:
    """Style of a half-block cell: top pixel as foreground, bottom as background."""
    return Style.from_color(_GREYS[key >> 8], _GREYS[key & 0xFF])


# ------------------------------------------------------------------- text


def render_digit(image: np.ndarray, mode: str = "blocks") -> Text:
    """One H x W image (28 x 28 for MNIST) -> Text of `digit_size(mode)` cells."""
    if np.ndim(image) != 2:
        raise ValueError(f"expected one H x W image, got shape {np.shape(image)}")
    return render_grid(np.asarray(image)[None], mode=mode, cols=1)


def render_grid(
    images: np.ndarray,
    mode: str = "blocks",
    cols: int = 4,
    max_width: int | None = None,
    captions: Sequence[str] | None = None,
) -> Text:
    """N images -> one Text: `cols` per row, one blank cell between digits and one
    blank line between rows, with an optional caption centred under each digit.

    Given `max_width`, the grid uses fewer columns to fit rather than wrapping.
    Every line is exactly `grid_size(...)[0]` cells wide (short last rows are
    padded with blanks), lines are joined by "\\n" and there is no final newline.
    The Text is ``no_wrap`` with ``overflow="crop"``: a container narrower than
    the grid cuts it at the edge instead of wrapping it.
    """
    _check_mode(mode)
    _check_cols(cols)
    batch = _as_batch(images)
    n, h_px, w_px = batch.shape
    if captions is not None and len(captions) != n:
        raise ValueError(f"got {len(captions)} captions for {n} images")
    if n == 0:
        return Text("", no_wrap=True, overflow="crop")
    if max_width is not None:
        cols = fit_columns(n, mode, cols, max_width, shape=(h_px, w_px))
    cols = min(cols, n)
    chars, keys = _CELLS[mode](batch)
    return _to_text(*_compose(chars, keys, cols, captions))


def _compose(
    chars: np.ndarray,
    keys: np.ndarray | None,
    cols: int,
    captions: Sequence[str] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Lay N x h x w cells out as a (lines x width) canvas of chars and keys."""
    n, h, w = chars.shape
    rows = math.ceil(n / cols)
    cap = captions is not None
    block_h = h + int(cap)
    # Pad with blank digits to fill the last row, add the caption line and the
    # separator line/column to each digit, then drop the last row's separator
    # line and the last column's gap.
    pad = ((0, rows * cols - n), (0, int(cap) + 1), (0, 1))
    chars = np.pad(chars, pad, constant_values=" ")
    if cap:
        chars[:n, h, :w] = _caption_cells(captions, w)
    chars = chars.reshape(rows, cols, block_h + 1, w + 1).transpose(0, 2, 1, 3)
    chars = chars.reshape(rows * (block_h + 1), cols * (w + 1))[:-1, :-1]
    if keys is not None:
        keys = np.pad(keys, pad, constant_values=-1)
        keys = keys.reshape(rows, cols, block_h + 1, w + 1).transpose(0, 2, 1, 3)
        keys = keys.reshape(rows * (block_h + 1), cols * (w + 1))[:-1, :-1]
    return chars, keys


def _caption_cells(captions: Sequence[str], width: int) -> np.ndarray:
    """Captions -> N x width single-cell characters, centred, cut to width."""
    out = np.full((len(captions), width), " ")
    for i, caption in enumerate(captions):
        # One character per cell keeps the grid rectangular: control and wide
        # characters would shift everything after them.
        text = "".join(c if c.isprintable() and cell_len(c) == 1 else "?" for c in str(caption))
        text = text[:width]
        start = (width - len(text)) // 2
        out[i, start : start + len(text)] = list(text)
    return out


def _to_text(chars: np.ndarray, keys: np.ndarray | None) -> Text:
    """Canvas -> Text: lines joined by newlines, one span per run of equal keys."""
    lines, width = chars.shape
    rows = np.ascontiguousarray(chars).view(f"<U{width}").ravel()
    plain = "\n".join(rows.tolist())
    spans: list[Span] = []
    if keys is not None:
        # Flat keys in the same order as `plain`, a -1 standing for each "\n".
        flat = np.pad(keys, ((0, 0), (0, 1)), constant_values=-1).ravel()[:-1]
        cuts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [flat.size]))
        values = flat[starts]
        styled = values >= 0
        runs = zip(
            starts[styled].tolist(), ends[styled].tolist(), values[styled].tolist(), strict=True
        )
        spans = [Span(s, e, _block_style(k)) for s, e, k in runs]
    return Text(plain, spans=spans, no_wrap=True, overflow="crop")
