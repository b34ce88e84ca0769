"""A folder of ordinary images (PNG, JPEG, BMP, GIF, WebP: whatever Pillow reads) as
training data, converted once to 28 x 28 greyscale and cached.

Subfolders are classes (sorted names -> labels 0..K-1); a folder with none is
unlabelled. Each image keeps its aspect ratio, is scaled to fit 28 x 28 and centred
on black; `invert` "auto" looks at the image's border: a light border means a dark
drawing on light paper, which is inverted to MNIST's light-on-dark. Files that are not
images, or are corrupt or empty, are skipped and counted. The converted set is cached
(in the user cache, see `cache_dir`) under a key of every file's name, size and
modification time and the conversion settings, so a changed folder is converted again.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gan_tui.errors import DataError

SIZE = 28
CACHE_VERSION = 1  # bump when the conversion changes: old caches are then ignored
_CHUNK = 256  # images per task: enough work per process hop, a smooth progress bar


@dataclass(frozen=True)
class ImageFolder:
    images: np.ndarray  # uint8 N x 28 x 28
    labels: np.ndarray  # int64 N (zeros when unlabelled)
    classes: tuple[str, ...]  # class folder names; () when unlabelled
    skipped: int  # files that were not usable images


def looks_like_image_folder(folder: Path) -> bool:
    """Something here, and no IDX files: then the folder is taken as images (an empty
    folder keeps the IDX reader's message about the files it expected)."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return bool(entries) and not any("ubyte" in p.name for p in entries if p.is_file())


def list_files(folder: Path) -> tuple[list[tuple[Path, int]], tuple[str, ...]]:
    """(file, label) pairs in a stable order and the class names. Subfolders are the
    classes; files beside them are not used. Hidden files and folders are ignored."""
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        files = [(f, label) for label, sub in enumerate(subdirs) for f in _files_in(sub)]
        return files, tuple(d.name for d in subdirs)
    return [(f, 0) for f in _files_in(folder)], ()


def _files_in(folder: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                yield Path(root) / name


def cache_key(files: list[tuple[Path, int]], invert: str) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION} invert={invert}\n".encode())
    for path, label in files:
        try:
            info = path.stat()
        except OSError:
            continue
        digest.update(f"{path}\0{label}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def convert(path: Path, invert: str) -> np.ndarray | None:
    """One file -> uint8 28 x 28, or None when it is not a usable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.seek(0)  # an animated GIF: its first frame
            grey = _greyscale(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError):
        return None
    if grey.width == 0 or grey.height == 0:
        return None
    pixels = np.asarray(grey, dtype=np.uint8)
    if invert == "yes" or (invert == "auto" and _light_border(pixels)):
        pixels = 255 - pixels
    return _fit(Image.fromarray(pixels))


def _greyscale(image):  # noqa: ANN001, ANN202 (PIL types)
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # Transparent parts are paper: composite over white before going grey.
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("L")
    return image.convert("L")


def _light_border(pixels: np.ndarray) -> bool:
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return float(border.mean()) > 127.5


def _fit(image) -> np.ndarray:  # noqa: ANN001 (a PIL image)
    """Scale to fit 28 x 28 keeping the aspect ratio, centred on black."""
    from PIL import Image

    if image.size != (SIZE, SIZE):
        scale = SIZE / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("L", (SIZE, SIZE), 0)
    canvas.paste(image, ((SIZE - image.width) // 2, (SIZE - image.height) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def _convert_chunk(paths: list[str], invert: str) -> list[np.ndarray | None]:
    return [convert(Path(p), invert) for p in paths]


def convert_all(paths: list[Path], invert: str,
                progress: Callable[[int], None] | None = None) -> list[np.ndarray | None]:
    """Convert every file on all cores; `progress(n)` after each chunk of n files."""
    chunks = [[str(p) for p in paths[i:i + _CHUNK]] for i in range(0, len(paths), _CHUNK)]
    workers = min(len(chunks), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else (os.cpu_count() or 1))
    if workers <= 1:
        results = []
        for chunk in chunks:
            results += _convert_chunk(chunk, invert)
            if progress:
                progress(len(chunk))
        return results
    out: list[list[np.ndarray | None]] = [[] for _ in chunks]
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_convert_chunk, chunk, invert): i for i, chunk in enumerate(chunks)}
        for future in concurrent.futures.as_completed(futures):
            out[futures[future]] = future.result()
            if progress:
                progress(len(chunks[futures[future]]))
    return [image for chunk in out for image in chunk]


def load_image_folder(folder: Path, invert: str, cache: Path,
                      progress: bool = False) -> ImageFolder:
    """The folder's images, converted (or read back from the cache). `progress`: a bar on
    stderr while converting (the CLI's, before any dashboard owns the terminal)."""
    files, classes = list_files(folder)
    if not files:
        raise DataError(f"{folder}: no files to use as images")
    cached = cache / f"images-{cache_key(files, invert)}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as data:
                return ImageFolder(data["images"], data["labels"], tuple(data["classes"]),
                                   int(data["skipped"]))
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache: convert again
    paths = [path for path, _ in files]
    converted = (_with_progress(folder, paths, invert) if progress
                 else convert_all(paths, invert))
    kept = [(image, label) for image, (_, label) in zip(converted, files, strict=True)
            if image is not None]
    skipped = len(files) - len(kept)
    if not kept:
        raise DataError(f"{folder}: none of its {len(files):,} files is an image Pillow can "
                        "read")
    result = ImageFolder(np.stack([image for image, _ in kept]),
                         np.array([label for _, label in kept], dtype=np.int64), classes,
                         skipped)
    _save_cache(cached, result)
    return result


def _save_cache(path: Path, folder: ImageFolder) -> None:
    """Atomically; a cache that cannot be written only costs the next run a conversion."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(temp, images=folder.images, labels=folder.labels,
                 classes=np.array(folder.classes, dtype=str), skipped=folder.skipped)
        os.replace(temp, path)
    except OSError:
        pass


def _with_progress(folder: Path, paths: list[Path], invert: str) -> list[np.ndarray | None]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(f"Converting images in {folder.name}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("convert", total=len(paths))
        return convert_all(paths, invert, lambda n: bar.advance(task, n))
