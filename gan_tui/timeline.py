"""The timeline: every epoch's fixed-noise samples of a run, in one compact file.

`samples/timeline.bin` starts with a 12-byte header (b"GTTL", version, image count,
height, width) and then holds one record per epoch: the epoch number (uint32, 1-based)
and its images as uint8 (0..255 for -1..1). Records are appended at each epoch's end,
so a killed run leaves a readable prefix; a resumed run that repeats an epoch appends
it again and readers keep the newest record of each epoch.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from gan_tui.serve.protocol import images_to_uint8, uint8_to_images

FILE_NAME = "timeline.bin"
MAGIC = b"GTTL"
VERSION = 1
HEADER = struct.Struct(">4sBxHHH")  # magic, version, pad, count, height, width
EPOCH = struct.Struct(">I")


def path_in(run_dir: str | Path) -> Path:
    return Path(run_dir) / "samples" / FILE_NAME


def append(path: Path, epoch_number: int, images: np.ndarray) -> None:
    """Add one epoch's images (float N x H x W in [-1, 1]); a header first if new.

    A file written for another image count (a different --sample-count) is started
    afresh rather than mixed."""
    count, height, width = images.shape
    header = HEADER.pack(MAGIC, VERSION, count, height, width)
    fresh = not path.exists() or _header(path) != (count, height, width)
    with open(path, "wb" if fresh else "ab") as out:
        if fresh:
            out.write(header)
        out.write(EPOCH.pack(epoch_number) + images_to_uint8(images).tobytes())


def _header(path: Path) -> tuple[int, int, int] | None:
    try:
        with open(path, "rb") as f:
            magic, version, count, height, width = HEADER.unpack(f.read(HEADER.size))
    except (OSError, struct.error):
        return None
    return (count, height, width) if magic == MAGIC and version == VERSION else None


def read(path: Path) -> dict[int, np.ndarray]:
    """epoch number -> float32 images in [-1, 1], newest record per epoch; {} if none."""
    shape = _header(path)
    if shape is None:
        return {}
    size = EPOCH.size + shape[0] * shape[1] * shape[2]
    data = path.read_bytes()[HEADER.size:]
    epochs: dict[int, np.ndarray] = {}
    for start in range(0, len(data) - size + 1, size):  # a torn last record is left out
        (epoch,) = EPOCH.unpack_from(data, start)
        pixels = np.frombuffer(data, np.uint8, shape[0] * shape[1] * shape[2],
                               start + EPOCH.size)
        epochs[epoch] = uint8_to_images(pixels.reshape(shape))
    return dict(sorted(epochs.items()))
