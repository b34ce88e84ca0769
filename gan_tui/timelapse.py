"""`gan-tui timelapse [RUN|latest] --out evolution.gif`: how a run's samples evolved.

One frame per epoch from the run's timeline (the fixed-noise grid, the same noise every
epoch), the epoch number drawn on each; `.gif` animates them, `.png` lays the epochs
out on one contact sheet.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from gan_tui import timeline
from gan_tui.errors import GanTuiError, UsageError
from gan_tui.runs import DEFAULT_ROOT, resolve_run
from gan_tui.sample import int_at_least

SUFFIXES = (".gif", ".png")
LABEL_H = 12  # pixels for the epoch number (PIL's default bitmap font is ~11 high)


class TimelapseError(GanTuiError):
    """Nothing to draw, or the output cannot be written."""


def grid(images: np.ndarray, scale: int) -> np.ndarray:
    """N x 28 x 28 in [-1, 1] -> one uint8 picture, as square a grid as fits, 2 px apart."""
    count = len(images)
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    size = 28 * scale
    pad = 2
    sheet = np.zeros((rows * (size + pad) + pad, cols * (size + pad) + pad), np.uint8)
    pixels = np.rint((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)
    for i, image in enumerate(pixels):
        r, c = divmod(i, cols)
        big = np.kron(image, np.ones((scale, scale), np.uint8))
        sheet[pad + r * (size + pad):pad + r * (size + pad) + size,
              pad + c * (size + pad):pad + c * (size + pad) + size] = big
    return sheet


def frame(images: np.ndarray, epoch: int, scale: int):  # noqa: ANN201 (a PIL image)
    from PIL import Image, ImageDraw

    picture = grid(images, scale)
    canvas = Image.new("L", (picture.shape[1], picture.shape[0] + LABEL_H), 0)
    canvas.paste(Image.fromarray(picture), (0, LABEL_H))
    ImageDraw.Draw(canvas).text((3, 0), f"epoch {epoch}", fill=255)
    return canvas


def write(epochs: dict[int, np.ndarray], out: Path, fps: float, scale: int) -> None:
    frames = [frame(images, epoch, scale) for epoch, images in epochs.items()]
    try:
        if out.suffix == ".gif":
            frames[0].save(out, save_all=True, append_images=frames[1:], loop=0,
                           duration=max(20, round(1000 / fps)))
        else:
            contact_sheet(frames).save(out)
    except OSError as exc:
        raise TimelapseError(f"cannot write {out}: {exc.strerror or exc}") from None


def contact_sheet(frames: list):  # noqa: ANN001, ANN201 (PIL images)
    from PIL import Image

    cols = min(len(frames), 10)
    rows = math.ceil(len(frames) / cols)
    w, h = frames[0].size
    sheet = Image.new("L", (cols * (w + 4), rows * (h + 4)), 40)
    for i, image in enumerate(frames):
        r, c = divmod(i, cols)
        sheet.paste(image, (c * (w + 4) + 2, r * (h + 4) + 2))
    return sheet


def cmd_timelapse(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--out must end in .gif (animation) or .png (contact sheet), "
                         f"got {out.name!r}")
    run_dir = resolve_run(args.run, Path(args.runs_root))
    epochs = timeline.read(timeline.path_in(run_dir))
    if not epochs:
        raise TimelapseError(f"{run_dir} has no timeline yet (samples/{timeline.FILE_NAME} "
                             "is written at each epoch's end)")
    write(epochs, out, args.fps, args.scale)
    print(f"Wrote {out}: {len(epochs)} epoch{'s' if len(epochs) != 1 else ''} "
          f"({min(epochs)}-{max(epochs)}) of {run_dir.name}")
    return 0


def _fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.1 <= value <= 50:
        raise argparse.ArgumentTypeError(f"must lie in 0.1..50, got {value:g}")
    return value


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "timelapse", help="write how a run's samples evolved: an animated GIF or a PNG sheet",
        description="One frame per epoch (the run's fixed-noise digits, the epoch number on "
        "each) from the run's samples/timeline.bin: .gif animates them, .png lays them out.")
    p.add_argument("run", nargs="?", default="latest", metavar="RUN",
                   help="a run folder, its name, or 'latest' (default)")
    p.add_argument("--out", default="evolution.gif", metavar="FILE",
                   help="evolution.gif (default) or a .png contact sheet")
    p.add_argument("--fps", type=_fps, default=4.0, help="GIF frames per second (default 4)")
    p.add_argument("--scale", type=int_at_least(1), default=3,
                   help="pixels per digit pixel (default 3)")
    p.add_argument("--runs-root", default=DEFAULT_ROOT, metavar="DIR",
                   help="where run names are looked up (default ./runs)")
    p.set_defaults(func=cmd_timelapse)
