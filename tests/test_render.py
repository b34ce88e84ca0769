"""Renderers on real MNIST digits: decode what is drawn and compare with the pixels."""

from __future__ import annotations

import gzip
import io
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from gan_tui import render
from gan_tui.render import (
    RENDER_MODES,
    digit_size,
    dither,
    fit_columns,
    grid_size,
    render_digit,
    render_grid,
    to_unit,
)

MNIST_IMAGES = (
    Path(__file__).resolve().parents[1] / "gan_tui/assets/mnist/t10k-images-idx3-ubyte.gz"
)
UPPER_HALF = "\u2580"
# Dark to bright by the ink each glyph puts on screen (Paul Bourke's short ramp).
RAMP = " .:-=+*#%@"
# Expected sizes, worked out by hand: 28 x 28 is 28 x 14 cells as half blocks or
# ASCII pairs, 14 x 7 cells as braille.
DIGIT_CELLS = {"blocks": (28, 14), "braille": (14, 7), "ascii": (28, 14)}


def read_first_digits(n: int) -> np.ndarray:
    """The first n images of the bundled IDX file, uint8 n x 28 x 28."""
    with gzip.open(MNIST_IMAGES, "rb") as f:
        header = f.read(16)
        magic, count, rows, cols = np.frombuffer(header, dtype=">u4")
        assert (magic, rows, cols) == (0x803, 28, 28) and count >= n
        pixels = f.read(n * 28 * 28)
    return np.frombuffer(pixels, dtype=np.uint8).reshape(n, 28, 28).copy()


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return read_first_digits(16)


@pytest.fixture(scope="module")
def noisy() -> np.ndarray:
    """What an untrained tanh generator gives: every grey level, in [-1, 1]."""
    rng = np.random.default_rng(3)
    return np.tanh(rng.normal(size=(16, 28, 28))).astype(np.float32)


def cell_styles(text: Text) -> list:
    """The style of every character of `text`, None where unstyled."""
    styles = [None] * len(text.plain)
    for span in text.spans:
        for i in range(span.start, span.end):
            styles[i] = span.style
    return styles


def digit_cells(text: Text, index: int, mode: str, cols: int, captions: bool = False):
    """Character lines and style lines of digit `index` inside a rendered grid."""
    w, h = DIGIT_CELLS[mode]
    lines = text.plain.split("\n")
    styles = cell_styles(text)
    row, col = divmod(index, cols)
    top, left = row * (h + int(captions) + 1), col * (w + 1)
    offsets = np.cumsum([0] + [len(line) + 1 for line in lines])
    chars = [lines[top + y][left : left + w] for y in range(h)]
    style = [styles[offsets[top + y] + left : offsets[top + y] + left + w] for y in range(h)]
    return chars, style


def grey(color) -> int:
    r, g, b = color.get_truecolor()
    assert r == g == b, f"not a grey: {color}"
    return r


def decode_braille(lines: list[str]) -> np.ndarray:
    """Braille characters back to the dot bitmap they draw (2 x 4 dots per cell)."""
    h, w = len(lines), len(lines[0])
    dots = np.zeros((h * 4, w * 2), dtype=bool)
    for cy, line in enumerate(lines):
        for cx, ch in enumerate(line):
            code = ord(ch) - 0x2800
            assert 0 <= code < 256, f"not a braille cell: {ch!r}"
            for dy in range(4):
                for dx in range(2):
                    bit = (0x01, 0x02, 0x04, 0x40)[dy] if dx == 0 else (0x08, 0x10, 0x20, 0x80)[dy]
                    dots[cy * 4 + dy, cx * 2 + dx] = bool(code & bit)
    return dots


def reference_dither(image: np.ndarray, method: str) -> np.ndarray:
    """Textbook raster-order error diffusion, one pixel at a time."""
    kernels = {
        "atkinson": [(0, 1, 1 / 8), (0, 2, 1 / 8), (1, -1, 1 / 8), (1, 0, 1 / 8),
                     (1, 1, 1 / 8), (2, 0, 1 / 8)],
        "floyd-steinberg": [(0, 1, 7 / 16), (1, -1, 3 / 16), (1, 0, 5 / 16), (1, 1, 1 / 16)],
    }  # fmt: skip
    a = image.astype(np.float64)
    h, w = a.shape
    out = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            out[y, x] = a[y, x] > 127.5
            err = a[y, x] - 255 * out[y, x]
            for dy, dx, weight in kernels[method]:
                if y + dy < h and 0 <= x + dx < w:
                    a[y + dy, x + dx] += err * weight
    return out


# ------------------------------------------------------------ values, modes


def test_modes_and_a_clear_error_for_an_unknown_one(digits):
    assert RENDER_MODES == ("blocks", "braille", "ascii")
    for call in (
        lambda: render_grid(digits, mode="sixel"),
        lambda: render_digit(digits[0], mode="sixel"),
        lambda: digit_size("sixel"),
        lambda: grid_size(4, "sixel", 4),
        lambda: fit_columns(4, "sixel", 4, 80),
    ):
        with pytest.raises(ValueError, match="'sixel'.*blocks, braille, ascii"):
            call()


def test_to_unit_detects_the_range():
    half = np.array([[-1.0, 0.0, 1.0]])
    np.testing.assert_allclose(to_unit(half), [[0.0, 0.5, 1.0]])
    unit = np.array([[0.0, 0.25, 1.0]])
    np.testing.assert_allclose(to_unit(unit), [[0.0, 0.25, 1.0]])
    np.testing.assert_allclose(to_unit(np.array([[0, 51, 255]], np.uint8)), [[0, 0.2, 1]])
    out = to_unit(np.array([[-1.0, np.nan, 1.5]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.0, 1.0]])  # NaN black, overshoot clipped
    src = np.array([[-1.0, 1.0]], np.float32)
    to_unit(src)
    np.testing.assert_array_equal(src, [[-1.0, 1.0]])  # the caller's array is untouched


@pytest.mark.parametrize("mode", RENDER_MODES)
def test_both_input_ranges_and_uint8_draw_the_same(digits, mode):
    unit = digits.astype(np.float32) / 255
    tanh_range = unit * 2 - 1
    expected = render_grid(digits, mode=mode)
    for images in (unit, tanh_range, tanh_range[:, None]):  # N x 1 x 28 x 28 too
        got = render_grid(images, mode=mode)
        assert got.plain == expected.plain
        assert got.spans == expected.spans


def test_bad_shapes_and_counts_are_refused(digits):
    with pytest.raises(ValueError, match="shape"):
        render_grid(digits[None])  # N x C x H x W with C != 1
    with pytest.raises(ValueError, match="shape"):
        render_grid(digits[0, 0])
    with pytest.raises(ValueError, match="one H x W image"):
        render_digit(digits[:2])
    with pytest.raises(ValueError, match="2 captions for 4 images"):
        render_grid(digits[:4], captions=["1", "2"])
    with pytest.raises(ValueError, match="cols"):
        render_grid(digits[:4], cols=0)


# ---------------------------------------------------------------- blocks


def test_half_block_colours_are_the_pixels_they_stand_for(digits):
    text = render_grid(digits, mode="blocks", cols=4)
    for i, image in enumerate(digits):
        chars, styles = digit_cells(text, i, "blocks", cols=4)
        for y in range(14):
            for x in range(28):
                top, bottom = int(image[2 * y, x]), int(image[2 * y + 1, x])
                ch, style = chars[y][x], styles[y][x]
                assert grey(style.bgcolor) == (bottom if ch == UPPER_HALF else top)
                if ch == UPPER_HALF:
                    assert grey(style.color) == top
                else:  # a space: both halves are the background colour
                    assert ch == " " and top == bottom


def test_half_blocks_keep_every_grey_level_of_a_generator(noisy):
    text = render_digit(noisy[0], mode="blocks")
    expected = np.rint((noisy[0] + 1) / 2 * 255).astype(int)
    chars, styles = digit_cells(text, 0, "blocks", cols=1)
    drawn = np.zeros((28, 28), dtype=int)
    for y in range(14):
        for x in range(28):
            style = styles[y][x]
            drawn[2 * y + 1, x] = grey(style.bgcolor)
            is_half = chars[y][x] == UPPER_HALF
            drawn[2 * y, x] = grey(style.color) if is_half else drawn[2 * y + 1, x]
    np.testing.assert_array_equal(drawn, expected)
    assert len(np.unique(drawn)) > 200  # true grey levels, not a few shades


# --------------------------------------------------------------- braille


def test_braille_decodes_to_the_dithered_bitmap(digits):
    text = render_grid(digits, mode="braille", cols=4)
    for i, image in enumerate(digits):
        chars, styles = digit_cells(text, i, "braille", cols=4)
        np.testing.assert_array_equal(decode_braille(chars), dither(image))
        assert all(style is None for line in styles for style in line)


@pytest.mark.parametrize("method", render.DITHER_METHODS)
def test_dither_is_textbook_error_diffusion(digits, noisy, method):
    images = np.concatenate([digits[:3], np.rint((noisy[:2] + 1) * 127.5).astype(np.uint8)])
    got = dither(images, method=method)
    for image, dots in zip(images, got, strict=True):
        np.testing.assert_array_equal(dots, reference_dither(image, method))


def test_dither_keeps_strokes_and_faint_greys(digits):
    dots = dither(digits)
    ink = digits.sum(axis=(1, 2)) / 255
    # Strokes keep their weight: about one dot per unit of ink in every digit.
    np.testing.assert_allclose(dots.sum(axis=(1, 2)) / ink, 1.0, atol=0.1)
    # Pure black and white pixels stay exactly as they are.
    binary = np.where(digits > 127, 255, 0).astype(np.uint8)
    np.testing.assert_array_equal(dither(binary), binary > 0)
    # A faint grey stroke, all below the 50% threshold, still shows.
    faint = np.zeros((28, 28), np.uint8)
    faint[:, 13] = 100
    assert dither(faint).sum() >= 0.5 * faint.sum() / 255
    # More grey, never fewer dots: gradients stay gradients.
    for method in render.DITHER_METHODS:
        density = [dither(np.full((28, 28), v, np.uint8), method).mean() for v in range(0, 256, 8)]
        assert density == sorted(density) and density[0] == 0 and density[-1] > 0.9


def test_unknown_dither_method():
    with pytest.raises(ValueError, match="atkinson, floyd-steinberg"):
        dither(np.zeros((28, 28)), method="bayer")


# ----------------------------------------------------------------- ascii


def test_ascii_ramp_is_monotone_in_brightness(digits, noisy):
    for images in (digits, noisy):
        text = render_grid(images, mode="ascii", cols=4)
        assert text.spans == [] and text.plain.isascii()
        pairs, chars = [], []
        levels = render.to_gray8(images).astype(int)
        for i, image in enumerate(levels):
            lines, _ = digit_cells(text, i, "ascii", cols=4)
            pairs.append((image[0::2] + image[1::2]).ravel())  # each cell: its vertical pair
            chars.append(np.array([RAMP.index(c) for line in lines for c in line]))
        pair, rank = np.concatenate(pairs), np.concatenate(chars)
        order = np.argsort(pair, kind="stable")
        # A brighter cell never gets a lighter character than a darker one.
        assert np.all(np.diff(rank[order]) >= 0)
        assert np.all(rank[pair == 0] == 0) and np.all(rank[pair == 510] == 9)  # " " and "@"


def test_ascii_uses_the_whole_ramp_and_averages_the_pair():
    ramp = np.repeat(np.linspace(0, 255, 28).round()[None], 28, axis=0).astype(np.uint8)
    line = render_digit(ramp, mode="ascii").plain.split("\n")[0]
    ranks = [RAMP.index(c) for c in line]
    assert ranks == sorted(ranks) and set(line) == set(RAMP)  # dark to bright
    top_lit = np.zeros((28, 28), np.uint8)
    top_lit[0::2] = 200
    bottom_lit = np.roll(top_lit, 1, axis=0)
    assert render_digit(top_lit, "ascii").plain == render_digit(bottom_lit, "ascii").plain


# ------------------------------------------------------------------ grid


@pytest.mark.parametrize(
    ("mode", "n", "cols", "captions", "size"),
    [
        ("blocks", 16, 4, False, (115, 59)),
        ("blocks", 16, 4, True, (115, 63)),
        ("blocks", 5, 4, True, (115, 31)),
        ("blocks", 3, 4, False, (86, 14)),
        ("braille", 16, 4, False, (59, 31)),
        ("braille", 16, 8, True, (119, 17)),
        ("braille", 1, 4, False, (14, 7)),
        ("ascii", 16, 4, False, (115, 59)),
        ("ascii", 7, 3, True, (86, 47)),
    ],
)
def test_grid_size_in_cells(digits, mode, n, cols, captions, size):
    labels = [str(i % 10) for i in range(n)] if captions else None
    text = render_grid(digits[:n], mode=mode, cols=cols, captions=labels)
    lines = text.plain.split("\n")
    assert grid_size(n, mode, cols, captions=captions) == size
    assert (max(cell_len(line) for line in lines), len(lines)) == size
    assert {cell_len(line) for line in lines} == {size[0]}  # rectangular, nothing trailing
    assert not text.plain.endswith("\n") and lines[-1].strip()  # no blank last line


@pytest.mark.parametrize("mode", RENDER_MODES)
def test_digit_size(digits, mode):
    assert digit_size(mode) == DIGIT_CELLS[mode]
    lines = render_digit(digits[0], mode).plain.split("\n")
    assert (len(lines[0]), len(lines)) == DIGIT_CELLS[mode]
    odd = np.zeros((5, 3))  # other image sizes pad up to whole cells
    lines = render_digit(odd, mode).plain.split("\n")
    assert (len(lines[0]), len(lines)) == digit_size(mode, shape=(5, 3))


@pytest.mark.parametrize("mode", RENDER_MODES)
def test_max_width_drops_columns_instead_of_wrapping(digits, mode):
    w, h = DIGIT_CELLS[mode]
    for max_width in (200, 80, 2 * w + 1, 2 * w, w, 5):
        text = render_grid(digits, mode=mode, cols=8, max_width=max_width)
        lines = text.plain.split("\n")
        cols = fit_columns(16, mode, 8, max_width)
        assert cols == max(1, min(8, (max_width + 1) // (w + 1)))
        assert (cell_len(lines[0]), len(lines)) == grid_size(16, mode, cols)
        if max_width >= w:
            assert cell_len(lines[0]) <= max_width
            if cols < 8:  # the most that fit: one more column would not
                assert grid_size(16, mode, cols + 1)[0] > max_width
    assert fit_columns(2, "blocks", 8, 500) == 2  # never more columns than digits


def test_captions_are_centred_under_their_digits(digits):
    labels = ["7", "two", "a caption far too long to fit", "0\n\x1b[31m"]
    text = render_grid(digits[:4], mode="braille", cols=2, captions=labels)
    lines = text.plain.split("\n")
    assert len(lines) == 2 * 8 + 1
    assert lines[7] == " " * 6 + "7" + " " * 7 + " " + " " * 5 + "two" + " " * 6
    assert lines[8] == " " * 29  # the gap between rows
    assert lines[16][:14] == "a caption far "  # cut to the digit's width
    assert lines[16][15:] == "   0??[31m    "  # control characters cannot break the grid


def test_empty_batch_and_short_last_row(digits):
    assert render_grid(digits[:0]).plain == "" and grid_size(0, "blocks", 4) == (0, 0)
    text = render_grid(digits[:5], mode="ascii", cols=4)
    last_row = text.plain.split("\n")[-14:]
    assert all(line[29:].strip() == "" for line in last_row)  # blank, not stray cells


def test_prints_plainly_and_crops_instead_of_wrapping(digits):
    for mode in RENDER_MODES:
        text = render_grid(digits, mode=mode, cols=4)
        height = len(text.plain.split("\n"))
        plain = Console(file=io.StringIO(), color_system=None, width=300)
        plain.print(text)
        assert plain.file.getvalue() == text.plain + "\n"  # no escape codes, nothing extra
        # Inside a narrower container (a Textual widget, a rich Panel) the grid is
        # cut at the edge, never wrapped into a mess of half digits.
        narrow = Console(file=io.StringIO(), color_system=None, width=40)
        lines = narrow.render_lines(text, narrow.options, pad=False)
        assert len(lines) == height
        assert all(sum(cell_len(seg.text) for seg in line) == 40 for line in lines)


# --------------------------------------------------------- colour systems

SGR = re.compile(r"\x1b\[([0-9;]*)m")
XTERM_GREYS = {16: 0, 231: 255} | {232 + i: 8 + 10 * i for i in range(24)}
STANDARD_GREYS = {0: 0, 8: 85, 7: 170, 15: 255}  # black, bright black, white, bright white


def parse_sgr(params: list[int]) -> tuple[object, object]:
    """One SGR sequence -> (fg, bg) as ('rgb', (r, g, b)) / ('256', n) / ('16', n)."""
    colors: dict[int, object] = {38: None, 48: None}
    i = 0
    while i < len(params):
        p = params[i]
        if p in (38, 48) and params[i + 1] == 2:
            colors[p], i = ("rgb", tuple(params[i + 2 : i + 5])), i + 5
        elif p in (38, 48) and params[i + 1] == 5:
            colors[p], i = ("256", params[i + 2]), i + 3
        elif 30 <= p <= 37 or 40 <= p <= 47:
            colors[38 if p < 40 else 48], i = ("16", p % 10), i + 1
        elif 90 <= p <= 97 or 100 <= p <= 107:
            colors[38 if p < 100 else 48], i = ("16", p % 10 + 8), i + 1
        else:
            raise AssertionError(f"unexpected SGR parameter {p} in {params}")
    return colors[38], colors[48]


def decode_ansi(output: str) -> list[list[tuple[str, object, object]]]:
    """Printed output -> lines of (char, fg, bg) as the terminal would paint them."""
    lines: list[list[tuple[str, object, object]]] = [[]]
    fg = bg = None
    pos = 0
    for match in list(SGR.finditer(output)) + [None]:
        end = match.start() if match else len(output)
        for ch in output[pos:end]:
            if ch == "\n":
                lines.append([])
            else:
                lines[-1].append((ch, fg, bg))
        if match is None:
            break
        params = [int(p) for p in match.group(1).split(";") if p]
        fg, bg = (None, None) if params in ([], [0]) else parse_sgr(params)
        pos = match.end()
    return [line for line in lines if line]


def print_in_fresh_process(tmp_path: Path, images: np.ndarray, color_system: str) -> str:
    # rich memoises each Style's escape codes for the first colour system that
    # prints it (Style._ansi), process-wide; one interpreter per colour system
    # is what a real terminal session looks like.
    np.save(tmp_path / "images.npy", images)
    script = (
        "import sys, numpy as np\n"
        "from rich.console import Console\n"
        "from gan_tui.render import render_grid\n"
        "text = render_grid(np.load(sys.argv[1]), mode='blocks', cols=4)\n"
        "Console(color_system=sys.argv[2], force_terminal=True, no_color=False, width=200,\n"
        "        legacy_windows=False).print(text)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "images.npy"), color_system],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def painted_pixels(output: str, level_of) -> np.ndarray:
    """Decode printed half blocks of a 4 x 1 grid back to four 28 x 28 images."""
    lines = decode_ansi(output)
    assert len(lines) == 14
    out = np.zeros((4, 28, 28), dtype=int)
    for y, line in enumerate(lines):
        assert len(line) == 4 * 28 + 3
        for i in range(4):
            for x in range(28):
                ch, fg, bg = line[i * 29 + x]
                out[i, 2 * y + 1, x] = level_of(bg)
                out[i, 2 * y, x] = level_of(fg) if ch == UPPER_HALF else level_of(bg)
    return out


def test_truecolor_paints_exact_greys(tmp_path, digits, noisy):
    images = np.concatenate([digits[:2], render.to_gray8(noisy[:2])])
    out = print_in_fresh_process(tmp_path, images, "truecolor")

    def level(color):
        kind, rgb = color
        assert kind == "rgb" and rgb[0] == rgb[1] == rgb[2]
        return rgb[0]

    np.testing.assert_array_equal(painted_pixels(out, level), images)


def test_256_colours_use_the_nearest_grey_of_the_palette(tmp_path, digits, noisy):
    images = np.concatenate([digits[:2], render.to_gray8(noisy[:2])])
    out = print_in_fresh_process(tmp_path, images, "256")
    assert "38;2;" not in out and "48;2;" not in out and "38;5;" in out

    def level(color):
        kind, number = color
        assert kind == "256" and number in XTERM_GREYS, color  # greys only, no tints
        return XTERM_GREYS[number]

    painted = painted_pixels(out, level)
    assert np.abs(painted - images).max() <= 13  # within about one step of the ramp
    assert np.all(painted[images == 0] == 0) and np.all(painted[images == 255] == 255)
    assert len(np.unique(painted)) >= 20  # the whole grey ramp is used


def test_16_colours_use_the_four_greys(tmp_path, digits, noisy):
    images = np.concatenate([digits[:2], render.to_gray8(noisy[:2])])
    out = print_in_fresh_process(tmp_path, images, "standard")
    assert "38;2;" not in out and "38;5;" not in out and "48;5;" not in out

    def level(color):
        kind, number = color
        assert kind == "16" and number in STANDARD_GREYS, color
        return STANDARD_GREYS[number]

    painted = painted_pixels(out, level)
    assert np.abs(painted - images).max() <= 43  # the nearest of 0, 85, 170, 255
    assert set(np.unique(painted)) == {0, 85, 170, 255}


# ------------------------------------------------------------------ speed


@pytest.mark.parametrize("mode", RENDER_MODES)
def test_sixteen_digits_render_fast(noisy, mode):
    render_grid(noisy, mode=mode)  # warm the style cache, as every later epoch is
    times = []
    for _ in range(5):
        start = time.perf_counter()
        render_grid(noisy, mode=mode)
        times.append(time.perf_counter() - start)
    # Measured ~4 ms for blocks on noise (every cell a new colour pair), ~2 ms
    # for braille; the bound leaves room for slow CI machines.
    assert statistics.median(times) < 0.025
