"""Datasets: a validated IDX reader, the bundled MNIST test split, downloads, and (in
`images` and `arrays`) folders of ordinary images and NumPy files.

Whatever the source, the result is one uint8 array N x 28 x 28 that the engine
turns once into a float tensor in [-1, 1] on the training device; batches are
index slices of it, so there is no per-image work during training.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gan_tui.errors import DataError

BUNDLED_DIR = Path(__file__).parent.parent / "assets" / "mnist"
IMAGE_SIZE = 28

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dims.
_UBYTE = 0x08
_IMAGE_DIMS, _LABEL_DIMS = 3, 1
# The most images (or labels) one file may announce: MNIST's train + test splits are
# 70,000, EMNIST's largest 814,255. A header above it is refused before its body is read.
MAX_ITEMS = 1_000_000
NUM_CLASSES = 10

# Standard MNIST-family file stems for each split.
SPLIT_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# torchvision dataset class for each downloadable dataset name.
DOWNLOADABLE = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}


@dataclass(frozen=True)
class DigitSet:
    """Images (uint8, N x 28 x 28) with their labels (int64, N) and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    source: str
    labelled: bool = True  # False: the labels are placeholders (a flat folder, a .npy)
    classes: tuple[str, ...] = ()  # names of labels 0..K-1 when they are not digits

    def __len__(self) -> int:
        return len(self.images)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or .gz) of unsigned bytes, checking every header field."""
    with open_idx(path) as idx:
        return idx.read_body()


class IdxFile:
    """An IDX file opened for streaming: the header is read and checked first, then the
    body is decompressed (for .gz) only as far as the header says it reaches, so a
    forged header or a decompression bomb is refused before its body is read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        try:
            with open(path, "rb") as probe:
                gzipped = probe.read(2) == b"\x1f\x8b"
            self._fh = gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
        try:
            head = self._read(4)
            ndim = _check_magic(head, self.name)
            head += self._read(4 * ndim)
            self.dims = _check_header(head, self.name)
        except BaseException:
            self.close()
            raise
        self.header_len = len(head)

    def __enter__(self) -> IdxFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()

    def require_dims(self, ndim: int) -> None:
        if len(self.dims) != ndim:
            what = "image" if ndim == _IMAGE_DIMS else "label"
            raise DataError(f"{self.name}: {what} file has {len(self.dims)} dimensions, "
                            f"expected {ndim}")

    def read_body(self) -> np.ndarray:
        """The body, exactly as long as the header says (one byte more is read to tell)."""
        expected = math.prod(self.dims)
        body = self._read_upto(expected + 1)
        if len(body) != expected:
            shape = " x ".join(map(str, self.dims))
            holds = f"more than {expected}" if len(body) > expected else str(len(body))
            raise DataError(f"{self.name}: header says {shape} = {expected} bytes, file "
                            f"holds {holds}")
        return np.frombuffer(body, dtype=np.uint8).reshape(self.dims)

    def _read_upto(self, size: int, chunk: int = 1 << 20) -> bytes:
        """Up to `size` bytes, a chunk at a time: read(size) would allocate all of a
        forged header's size up front (gzip's buffer does), however short the file."""
        parts = bytearray()
        while len(parts) < size:
            piece = self._read(min(chunk, size - len(parts)))
            if not piece:
                break
            parts += piece
        return bytes(parts)

    def _read(self, size: int) -> bytes:
        try:
            return self._fh.read(size)
        except (gzip.BadGzipFile, EOFError, ValueError, zlib.error) as exc:  # before OSError:
            raise DataError(f"{self.name}: not a valid gzip file ({exc})") from None  # subclass
        except OSError as exc:
            raise DataError(f"{self.name}: cannot read ({exc.strerror or exc})") from None


def open_idx(path: str | Path) -> IdxFile:
    return IdxFile(Path(path))


def _check_magic(head: bytes, name: str) -> int:
    """The number of dimensions the 4 magic bytes announce."""
    if len(head) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(head)} bytes)")
    zero0, zero1, type_code, ndim = head[0], head[1], head[2], head[3]
    if zero0 or zero1 or type_code != _UBYTE or ndim not in (_LABEL_DIMS, _IMAGE_DIMS):
        raise DataError(
            f"{name}: bad IDX magic number 0x{int.from_bytes(head[:4], 'big'):08X} "
            "(expected 0x00000801 for labels or 0x00000803 for images)"
        )
    return ndim


def _check_header(head: bytes, name: str) -> tuple[int, ...]:
    """The dimensions of a complete header (magic + one 32-bit size per dimension),
    refused when they describe more than gan-tui would ever read."""
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        raise DataError(f"{name}: truncated IDX header")
    dims = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims[0] > MAX_ITEMS:
        raise DataError(f"{name}: header says {dims[0]:,} items; gan-tui reads at most "
                        f"{MAX_ITEMS:,} (a damaged or forged header?)")
    return dims


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array; raise DataError naming what is wrong."""
    ndim = _check_magic(raw[:4], name)
    dims = _check_header(raw[: 4 + 4 * ndim], name)
    header_len = 4 + 4 * ndim
    expected = math.prod(dims)  # Python ints: a forged header cannot wrap around
    payload = len(raw) - header_len
    if payload != expected:
        shape = " x ".join(map(str, dims))
        raise DataError(f"{name}: header says {shape} = {expected} bytes, file holds {payload}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def validate_pair(images: np.ndarray, labels: np.ndarray, name: str) -> None:
    if images.ndim != 3:
        raise DataError(f"{name}: image file has {images.ndim} dimensions, expected 3")
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        h, w = images.shape[1:]
        raise DataError(f"{name}: images are {h} x {w}, gan-tui needs 28 x 28")
    if labels.ndim != 1:
        raise DataError(f"{name}: label file has {labels.ndim} dimensions, expected 1")
    if len(images) != len(labels):
        raise DataError(f"{name}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise DataError(f"{name}: the files hold no images")
    check_labels(labels, name)


def check_labels(labels: np.ndarray, name: str) -> None:
    """Every label is a digit class 0-9 (conditional presets index an embedding by it)."""
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if len(bad):
        first = int(bad[0])
        more = f" (and {len(bad) - 1:,} more)" if len(bad) > 1 else ""
        raise DataError(f"{name}: label {int(labels[first])} at position {first} is not a "
                        f"digit class 0-{NUM_CLASSES - 1}{more}")


def find_split_files(directory: Path, split: str) -> tuple[Path, Path]:
    """Locate the images/labels files of one split by their standard MNIST names."""
    found = []
    for stem in SPLIT_STEMS[split]:
        candidates = [directory / f"{stem}.gz", directory / stem]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataError(f"{directory}: no {stem}[.gz] for the {split!r} split")
        found.append(path)
    return found[0], found[1]


def load_idx_dir(directory: str | Path, split: str = "test") -> DigitSet:
    """Load `test`, `train` or `all` (train then test) from a folder of IDX files."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "is not a folder" if directory.exists() else "does not exist"
        raise DataError(f"data directory {directory} {what}")
    splits = ("train", "test") if split == "all" else (split,)
    parts = [_load_split(directory, s) for s in splits]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    return DigitSet(images, labels, f"{directory} ({split})")


def _load_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Both headers are read and checked against each other before either body."""
    image_path, label_path = find_split_files(directory, split)
    name = f"{directory} ({split})"
    with open_idx(image_path) as images, open_idx(label_path) as labels:
        images.require_dims(_IMAGE_DIMS)
        labels.require_dims(_LABEL_DIMS)
        if images.dims[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            h, w = images.dims[1:]
            raise DataError(f"{image_path}: images are {h} x {w}, gan-tui needs 28 x 28")
        if images.dims[0] != labels.dims[0]:
            raise DataError(f"{name}: {images.dims[0]} images but {labels.dims[0]} labels")
        if images.dims[0] == 0:
            raise DataError(f"{name}: the files hold no images")
        label_values = labels.read_body()
        check_labels(label_values, str(label_path))
        return images.read_body(), label_values


def load_bundled(split: str = "test") -> DigitSet:
    """The MNIST test split shipped in the package (the seed's train=False)."""
    if split != "test":
        raise DataError(
            f"the bundled data is the MNIST test split only; for --split {split} use "
            "--dataset mnist (downloads) or --data-dir DIR"
        )
    digits = load_idx_dir(BUNDLED_DIR, "test")
    return DigitSet(digits.images, digits.labels, "bundled MNIST test split")


def cache_dir() -> Path:
    """Where downloads go: $GAN_TUI_CACHE_DIR or the platform's user cache."""
    override = os.environ.get("GAN_TUI_CACHE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("gan-tui"))


def download(name: str, split: str, root: Path | None = None) -> DigitSet:
    """Fetch a full MNIST-family dataset with torchvision into the user cache."""
    from torchvision import datasets

    cls = getattr(datasets, DOWNLOADABLE[name])
    root = root or cache_dir()
    splits = (True, False) if split == "all" else (split == "train",)
    parts = []
    for train in splits:
        try:
            ds = cls(root=str(root), train=train, download=True)
        except Exception as exc:  # torchvision raises bare RuntimeError/URLError offline
            raise DataError(
                f"could not download {name} into {root} ({_short(exc)}); without a network, "
                "leave out --dataset to train on the bundled MNIST test split"
            ) from None
        parts.append((ds.data.numpy(), ds.targets.numpy()))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    validate_pair(images, labels, name)
    return DigitSet(images, labels, f"{name} ({split})")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__


def load_digits(dataset: str = "bundled", split: str = "test", data_dir: str | None = None,
                limit: int | None = None, invert: str = "auto",
                progress: bool = False) -> DigitSet:
    """Pick the source the config names; `limit` keeps the first N digits."""
    if data_dir is not None:
        digits = load_data_path(Path(data_dir), split, invert, progress)
    elif dataset == "bundled":
        digits = load_bundled(split)
    else:
        digits = download(dataset, split)
    if limit is not None and limit < len(digits):
        digits = dataclasses.replace(digits, images=digits.images[:limit],
                                     labels=digits.labels[:limit])
    return digits


def load_data_path(path: Path, split: str, invert: str = "auto",
                   progress: bool = False) -> DigitSet:
    """--data-dir: a folder of IDX files, a folder of images, or a .npy / .npz file."""
    from gan_tui.data import arrays, images

    if path.is_file() and path.suffix in arrays.SUFFIXES:
        pixels, labels = arrays.load_array_file(path)
        if labels is not None:
            check_labels(labels, str(path))
        return DigitSet(pixels, labels if labels is not None else np.zeros(len(pixels),
                                                                          np.int64),
                        str(path), labelled=labels is not None)
    if path.is_dir() and images.looks_like_image_folder(path):
        folder = images.load_image_folder(path, invert, cache_dir(), progress)
        plural = "s" if folder.skipped != 1 else ""
        skipped = f" ({folder.skipped:,} file{plural} skipped: not images)" if folder.skipped \
            else ""
        return DigitSet(folder.images, folder.labels, f"{path}{skipped}",
                        labelled=bool(folder.classes), classes=folder.classes)
    if path.is_file():
        raise DataError(f"data directory {path} is not a folder (nor a .npy / .npz file)")
    return load_idx_dir(path, split)


def conditional_problem(digits: DigitSet) -> str:
    """Why a conditional preset cannot train on `digits` ('' when it can)."""
    if not digits.labelled:
        return (f"{digits.source} has no classes (put the images in one subfolder per "
                "class, or give labels); a conditional preset needs them")
    if digits.classes and len(digits.classes) > NUM_CLASSES:
        return (f"{digits.source} has {len(digits.classes)} classes; conditional presets "
                f"draw at most {NUM_CLASSES} (the number keys 0-9)")
    return ""


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 N x 28 x 28 -> float32 N x 1 x 28 x 28 in [-1, 1], exactly as the seed's
    ToTensor() then Normalize([0.5], [0.5]) compute it."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device=device, dtype=torch.float32)
    x = x.div_(255.0).sub_(0.5).div_(0.5)
    return x.unsqueeze(1)
