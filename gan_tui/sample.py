"""`gan-tui sample`: digits from a trained generator, printed as text or saved to a file.

No TUI: load a generator (a gan-tui checkpoint, `latest`, a run folder, or the
seed script's bare `generator.state_dict()`), draw N digits from seeded noise in
eval mode, and either print them as a grid (see `render`) or write them to a
PNG grid or a float32 .npy array.
"""

from __future__ import annotations

import argparse
import math
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console

from gan_tui.config import DEVICES
from gan_tui.errors import ConfigError, GanTuiError
from gan_tui.presets import is_conditional
from gan_tui.render import RENDER_MODES, render_grid

if TYPE_CHECKING:  # torch loads only when a command runs: `gan-tui --help` stays quick
    import torch
    from torch import nn

BATCH = 1000  # digits per forward pass: bounded memory for -n 10000 and more
NUM_CLASSES = 10
OUT_SUFFIXES = (".png", ".npy")
PNG_PADDING = 2  # torchvision's default, as the seed's own sample grids
SEED_LIMIT = 2**64  # torch.Generator.manual_seed takes seeds below this
COLOR_CHOICES = ("auto", "always", "never")

EXAMPLES = """\
examples:
  gan-tui sample                                 16 digits from runs/*/checkpoints/last.pt
  gan-tui sample --checkpoint latest --render braille --seed 7
  gan-tui sample --checkpoint gen.pth -n 64 --out grid.png
  gan-tui sample -n 10000 --out digits.npy       float32 array 10000 x 28 x 28 in [-1, 1]
"""


class OutputError(GanTuiError):
    """An --out file cannot be written."""


# ------------------------------------------------------------------ arguments


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `sample` subcommand to the CLI's subparsers."""
    p = commands.add_parser(
        "sample",
        help="print digits from a trained generator, or save them (.png / .npy)",
        description="Draw digits from a trained generator and print them as a text grid,\n"
        "or write them to --out (.png or .npy). No TUI; exits when done.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", metavar="PATH", default="latest",
                   help="a gan-tui checkpoint, a run folder, 'latest' (the newest "
                   "runs/*/checkpoints/last.pt, the default), or a bare generator state dict "
                   "saved by the seed script")
    p.add_argument("-n", type=int_at_least(1), default=16, metavar="N",
                   help="how many digits (default 16)")
    p.add_argument("--cols", type=int_at_least(1), metavar="C",
                   help="digits per row (default: the square root of N, rounded up, so 4 for "
                   "16); a printed grid uses fewer to fit the terminal's width (or $COLUMNS)")
    p.add_argument("--render", choices=RENDER_MODES,
                   help="how to draw (default: blocks where the output has colour, braille "
                   "otherwise, since half blocks without colour show nothing)")
    p.add_argument("--seed", type=parse_seed, metavar="S",
                   help="noise seed: the same seed gives the same digits, and -n K gives the "
                   "first K of a larger -n (default: a fresh random seed)")
    p.add_argument("--digit", type=_digit, metavar="D",
                   help="draw only class D (0-9); conditional models only. Without it a "
                   "conditional model cycles through 0-9 and each digit is captioned")
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="where the generator runs (default cpu: fastest for a few digits; "
                   "auto: cuda, then mps, then cpu). Noise is drawn on the CPU, so a seed "
                   "gives the same digits on every device, up to rounding")
    p.add_argument("--color", choices=COLOR_CHOICES, default="auto",
                   help="escape codes: auto (only on a terminal; honours NO_COLOR and "
                   "FORCE_COLOR), always (also when piped, e.g. into less -R), or never")
    p.add_argument("--out", type=_out_path, metavar="FILE",
                   help="write FILE.png (a grid of --cols digits per row) or FILE.npy (a "
                   "float32 array N x 28 x 28 in [-1, 1]) instead of printing the grid; "
                   "prints one confirmation line")
    p.set_defaults(func=run_sample)



def _digit(text: str) -> int:
    value = parse_int(text)
    if not 0 <= value < NUM_CLASSES:
        raise argparse.ArgumentTypeError(f"must be a class 0-{NUM_CLASSES - 1}, got {value}")
    return value


def parse_seed(text: str) -> int:
    value = parse_int(text)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must lie in 0..2**64-1, got {value}")
    return value


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def int_at_least(minimum: int, why: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum` (`why` says why, in the error)."""

    def parse(text: str) -> int:
        value = parse_int(text)
        if value < minimum:
            reason = f" ({why})" if why else ""
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{reason}, got {value}")
        return value

    return parse


def _out_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in OUT_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"{text!r} must end in {' or '.join(OUT_SUFFIXES)} (a PNG grid or a NumPy array)"
        )
    return path


# ----------------------------------------------------------------- the command


def run_sample(args: argparse.Namespace) -> int:
    """Run `gan-tui sample`; returns the exit code. Known failures raise GanTuiError."""
    from gan_tui.checkpoint import find_checkpoint, load_generator
    from gan_tui.train import resolve_device

    device = resolve_device(args.device)
    path = find_checkpoint(args.checkpoint)
    generator, config = load_generator(path, device)
    conditional = is_conditional(config.preset)
    if args.digit is not None and not conditional:
        raise ConfigError(f"--digit needs a conditional model, but {path} holds the "
                          f"unconditional {config.preset!r} preset")
    seed = secrets.randbelow(2**63) if args.seed is None else args.seed
    labels = class_labels(args.n, args.digit) if conditional else None
    images = generate(generator, args.n, config.latent_dim, seed, device, labels)
    cols = args.cols or default_cols(args.n)
    if args.out is not None:
        print(save(images, args.out, cols) + f" (seed {seed})")
        return 0
    captions = None if labels is None else [str(c) for c in labels.tolist()]
    print_grid(images, cols, args.render, args.color, captions)
    return 0


def default_cols(n: int) -> int:
    """A square-ish grid: 4 columns for 16 digits, 8 for 64, 100 for 10,000."""
    return max(1, math.ceil(math.sqrt(n)))


def class_labels(n: int, digit: int | None) -> torch.Tensor:
    """All `digit`, or 0, 1, ..., 9, 0, 1, ... so a grid shows every class."""
    import torch

    if digit is not None:
        return torch.full((n,), digit, dtype=torch.long)
    return torch.arange(n, dtype=torch.long) % NUM_CLASSES


def generate(
    generator: nn.Module,
    n: int,
    latent_dim: int,
    seed: int,
    device: torch.device | str = "cpu",
    labels: torch.Tensor | None = None,
) -> np.ndarray:
    """n digits as float32 n x H x W in [-1, 1], BATCH at a time.

    Noise comes from a CPU torch.Generator seeded with `seed`, in whole blocks of
    BATCH rows even for the last, short batch: so the first k digits of any n >= k
    are the same, and the global RNG is left alone. Eval mode makes BatchNorm use
    its running statistics, so a digit does not depend on the others in its batch.
    Labels (conditional models) go to the generator as `generator(z, labels)`.
    """
    import torch

    generator.eval()
    rng = torch.Generator().manual_seed(seed)
    parts = []
    with torch.no_grad():
        for start in range(0, n, BATCH):
            stop = min(start + BATCH, n)
            z = torch.randn(BATCH, latent_dim, generator=rng)[: stop - start].to(device)
            out = (generator(z) if labels is None
                   else generator(z, labels[start:stop].to(device)))
            parts.append(out.float().cpu().reshape(stop - start, *out.shape[-2:]).numpy())
    return np.concatenate(parts)


# -------------------------------------------------------------------- outputs


def save(images: np.ndarray, path: Path, cols: int) -> str:
    """Write a .png grid or a .npy array; return the one-line confirmation."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".png":
            width, height = save_png(images, path, cols)
            what = f"a {width} x {height} px PNG grid, {min(cols, len(images))} per row"
        else:
            np.save(path, images.astype(np.float32, copy=False))
            what = "float32 array {} in [-1, 1]".format(" x ".join(map(str, images.shape)))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return f"wrote {len(images)} digits to {path}: {what}"


def save_png(images: np.ndarray, path: Path, cols: int) -> tuple[int, int]:
    """torchvision grid, `cols` per row, [-1, 1] mapped to [0, 1]; returns (width, height)."""
    import torch
    from torchvision.utils import make_grid, save_image

    tensor = torch.from_numpy(images).unsqueeze(1) * 0.5 + 0.5
    grid = make_grid(tensor, nrow=cols, padding=PNG_PADDING)
    save_image(grid, path)  # a single 3 x H x W image is saved as is
    return grid.shape[2], grid.shape[1]


def make_console(color: str) -> Console:
    """A stdout Console for --color; rich decides 24-bit, 256 or 16 colours from the env."""
    if color == "never":
        return Console(file=sys.stdout, color_system=None, no_color=True, highlight=False)
    if color == "always":
        # An explicit flag beats NO_COLOR (no-color.org); force_terminal makes pipes count.
        console = Console(file=sys.stdout, force_terminal=True, no_color=False, highlight=False)
        if console.color_system is None:  # TERM=dumb: still honour the explicit ask
            console = Console(file=sys.stdout, force_terminal=True, no_color=False,
                              color_system="standard", highlight=False)
        return console
    return Console(file=sys.stdout, highlight=False)


def print_grid(
    images: np.ndarray,
    cols: int,
    mode: str | None,
    color: str,
    captions: list[str] | None = None,
) -> None:
    """Print the grid, never wider than the console (fewer columns instead)."""
    console = make_console(color)
    has_color = console.color_system is not None and not console.no_color
    if mode is None:
        mode = "blocks" if has_color else "braille"
    elif mode == "blocks" and not has_color:
        print("gan-tui: note: blocks draw with colour and this output has none; "
              "try --render braille or --color always", file=sys.stderr)
    text = render_grid(images, mode=mode, cols=cols, max_width=console.width, captions=captions)
    # Console.print ignores the Text's own no_wrap: pass it here so nothing wraps. A reader
    # that leaves early (`| head`) is rich's to handle: it silences stdout and exits 1.
    console.print(text, no_wrap=True, overflow="crop")
