"""Fit the 4 x 4 digit grid into a panel: pick a digit size, resize the images.

gan_tui.render draws one cell per 1 x 2 (blocks, ascii) or 2 x 4 (braille)
pixels, so 16 MNIST digits at 28 x 28 need 115 x 59 cells in blocks: more than a
whole terminal. The dashboard shrinks the images (area averaging) to the largest
size whose grid fits the panel, and the renderer draws them as usual.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from gan_tui.render import grid_size

MIN_PX = 8  # below this a digit is no longer a digit
MAX_PX = 28  # never enlarge MNIST


def best_size(mode: str, width: int, height: int, n: int = 16, cols: int = 4,
              captions: bool = False) -> int:
    """The largest digit size in pixels (MIN_PX..MAX_PX) whose grid fits width x height."""
    for px in range(MAX_PX, MIN_PX, -1):
        w, h = grid_size(n, mode, cols, captions=captions, shape=(px, px))
        if w <= width and h <= height:
            return px
    return MIN_PX


def grid_cells(mode: str, px: int, n: int = 16, cols: int = 4,
               captions: bool = False) -> tuple[int, int]:
    """(width, height) in cells of the grid at `px` pixels per digit."""
    return grid_size(n, mode, cols, captions=captions, shape=(px, px))


@lru_cache(maxsize=32)
def _area_weights(source: int, target: int) -> np.ndarray:
    """target x source matrix: how much of each source pixel falls into each target pixel."""
    edges = np.linspace(0.0, source, target + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    pixels = np.arange(source)[None, :]
    overlap = np.clip(np.minimum(hi, pixels + 1) - np.maximum(lo, pixels), 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def resize(images: np.ndarray, px: int) -> np.ndarray:
    """N x H x W float images -> N x px x px by area averaging (a box filter)."""
    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim == 2:
        batch = batch[None]
    n, h, w = batch.shape[-3:]
    batch = batch.reshape(n, h, w)
    if (h, w) == (px, px):
        return batch
    rows, cols = _area_weights(h, px), _area_weights(w, px)
    return np.einsum("ih,nhw,jw->nij", rows, batch, cols, optimize=True)
