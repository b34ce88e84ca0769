"""Digits from a NumPy file: `.npy` (images) or `.npz` (images, optional labels).

Images are N x 28 x 28, uint8 (0..255) or float in [0, 1] or [-1, 1]; they become
uint8 like every other source. An `.npz` holds them under `images` (or `x`) and
optionally class labels under `labels` (or `y`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gan_tui.errors import DataError

SUFFIXES = (".npy", ".npz")
_IMAGE_KEYS = ("images", "x")
_LABEL_KEYS = ("labels", "y")


def load_array_file(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 images, int64 labels or None), checked; DataError naming what is wrong."""
    try:
        data = np.load(path, allow_pickle=False)  # never unpickles objects
        if isinstance(data, np.ndarray):  # a .npy
            images, labels = data, None
        else:
            with data:
                images = _first(data, _IMAGE_KEYS, path, required=True)
                labels = _first(data, _LABEL_KEYS, path, required=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable NumPy file ({str(exc)[:100]})") from None
    return _as_uint8(images, path), _as_labels(labels, len(images), path)


def _first(data, keys: tuple[str, ...], path: Path, required: bool):  # noqa: ANN001, ANN202
    for key in keys:
        if key in data.files:
            return data[key]
    if required:
        raise DataError(f"{path}: no {' or '.join(keys)} array in it "
                        f"(it holds {', '.join(data.files) or 'nothing'})")
    return None


def _as_uint8(images: np.ndarray, path: Path) -> np.ndarray:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{path}: images must be N x 28 x 28, got "
                        f"{' x '.join(map(str, images.shape))}")
    if len(images) == 0:
        raise DataError(f"{path}: holds no images")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating) and not np.issubdtype(images.dtype,
                                                                           np.integer):
        raise DataError(f"{path}: images of type {images.dtype} (need uint8 or float)")
    values = images.astype(np.float32)
    if not np.isfinite(values).all():
        raise DataError(f"{path}: images hold NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if np.issubdtype(images.dtype, np.integer) and low >= 0 and high <= 255:
        return values.astype(np.uint8)
    if low >= 0 and high <= 1:
        return np.rint(values * 255).astype(np.uint8)
    if low >= -1 and high <= 1:
        return np.rint((values + 1) * 127.5).astype(np.uint8)
    raise DataError(f"{path}: image values run from {low:g} to {high:g}; expected uint8, "
                    "or floats in [0, 1] or [-1, 1]")


def _as_labels(labels: np.ndarray | None, count: int, path: Path) -> np.ndarray | None:
    if labels is None:
        return None
    if labels.ndim != 1 or len(labels) != count or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels must be {count:,} whole numbers, one per image")
    return labels.astype(np.int64)
