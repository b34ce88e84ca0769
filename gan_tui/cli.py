"""Command line: `gan-tui [train] ...`, `gan-tui sample ...`.

Arguments become a validated TrainConfig; a terminal gets the Textual app, anything
else (or --headless) the line-based runner. Known errors print as one line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from gan_tui import __version__
from gan_tui.config import (
    DATASETS,
    DEVICES,
    FLAG_KEYS,
    INVERT_CHOICES,
    SPLITS,
    TrainConfig,
    check_resume,
    check_run_dir,
)
from gan_tui.errors import GanTuiError, UsageError, one_line

PROG = "gan-tui"
EXIT_USAGE = 2  # argparse's errors and UsageError: the command line alone is wrong

# CLI flag dest -> TrainConfig field. Flags default to None so we know what the user set.
CONFIG_FLAGS = FLAG_KEYS


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (the usage is one --help away)."""

    def error(self, message: str) -> NoReturn:
        text = f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n"
        self.exit(EXIT_USAGE, text if _rank_zero() else None)  # every rank says it: print once


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Train a GAN on handwritten digits and watch "
                           "it live in your terminal. With no command, `train` runs.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=OneLineParser)
    from gan_tui.presets import presets_help

    train = commands.add_parser("train", help="train (the default command)",
                                description="Train the GAN: the TUI in a terminal, "
                                "line output otherwise.", epilog=presets_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(train)
    train.set_defaults(func=run_train)
    for register in _extra_commands():
        register(commands)
    return parser


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    from gan_tui.presets import PRESET_INFO as PRESETS

    model = p.add_argument_group("model and optimiser (defaults: the seed tutorial)")
    model.add_argument("--preset", choices=list(PRESETS),
                       help=f"network pair (default {d.preset}; each is listed below)")
    model.add_argument("--epochs", type=int, help=f"epochs to train (default {d.epochs})")
    model.add_argument("--batch-size", type=int, help=f"images per step (default {d.batch_size})")
    model.add_argument("--latent-dim", type=int, help=f"noise size (default {d.latent_dim})")
    model.add_argument("--lr-g", type=float, help=f"generator Adam lr (default {d.lr_g})")
    model.add_argument("--lr-d", type=float, help=f"discriminator Adam lr (default {d.lr_d})")
    model.add_argument("--seed", type=int, help="random seed; same seed, same run on CPU")
    model.add_argument("--device", choices=DEVICES, help="auto: cuda, then mps, then cpu")
    model.add_argument("--threads", type=_threads, metavar="N|auto",
                       help="torch CPU threads (default auto: the cores shared fairly among "
                       "the gan-tui runs on this machine, adjusted while training)")
    model.add_argument("--ema", type=float, metavar="DECAY",
                       help="show and save samples from an exponential moving average of G "
                       "(e.g. 0.999; 0 = off, the seed's default; dcgan/cgan use 0.999)")
    model.add_argument("--lr-decay", type=float, metavar="FRACTION",
                       help="let both learning rates fall linearly towards 0 over this last "
                       "fraction of the run (e.g. 0.5; 0 = constant, the seed's default)")

    data = p.add_argument_group("data (default: the bundled MNIST test split, as the seed)")
    data.add_argument("--dataset", choices=DATASETS,
                      help="bundled (offline) or a full set downloaded into the user cache")
    data.add_argument("--data-dir", metavar="DIR",
                      help="a folder of MNIST-style IDX files, a folder of images (one "
                      "subfolder per class, or none), or a .npy / .npz file")
    data.add_argument("--invert", choices=INVERT_CHOICES,
                      help="images: make them light-on-dark like MNIST (auto: judged by each "
                      "image's border; default)")
    data.add_argument("--split", choices=SPLITS, help=f"which split (default {d.split})")
    data.add_argument("--limit", type=int, metavar="N", help="train on the first N images only")

    run = p.add_argument_group("run")
    run.add_argument("--run-dir", metavar="DIR",
                     help="where outputs go (default runs/<date>-<time>-<preset>)")
    run.add_argument("--resume", metavar="PATH", help="a checkpoint to continue, a run folder (its "
                     "checkpoints/last.pt), or 'latest'")
    run.add_argument("--force", action="store_true",
                     help="resume even if the data settings differ from the checkpoint's")
    run.add_argument("--log-every", type=int, metavar="N",
                     help=f"write a step record to metrics.jsonl every N steps ({d.log_every})")
    run.add_argument("--checkpoint-every", type=int, metavar="N",
                     help=f"keep checkpoints/epoch_NNNN.pt every N epochs ({d.checkpoint_every})")
    run.add_argument("--quality-samples", type=int, metavar="N",
                     help=f"digits scored for quality each epoch ({d.quality_samples}; 0 = off)")
    run.add_argument("--headless", action="store_true",
                     help="line output instead of the TUI (automatic when not a terminal)")
    run.add_argument("--on-hangup", choices=("detach", "stop"), default="detach",
                     help="when the dashboard's terminal goes away (SSH drops): detach = "
                     "save and carry the run on in the background (default), stop = save "
                     "and stop")
    run.add_argument("--detach", action="store_true",
                     help="train in a background process of its own and return at once; "
                     "watch it with gan-tui attach, list runs with gan-tui runs")
    from gan_tui import launch

    launch.add_arguments(p)


def _threads(text: str) -> int | str:
    """--threads: 'auto' or a whole number (range checked with the other settings)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {text!r}") \
            from None


def _extra_commands() -> list[Callable[[Any], None]]:
    """Subcommands that live in their own modules register themselves here."""
    from gan_tui import attach, evaluate, runs, sample, timelapse, web

    return [sample.register, evaluate.register, runs.register, attach.register,
            timelapse.register, web.register]


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, str | None]:
    """Merge flags over the defaults, or over the checkpoint's config when resuming."""
    from gan_tui.presets import PRESET_INFO as PRESETS

    overrides = {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k) is not None}
    overrides["sync_bn"] = bool(getattr(args, "sync_bn", False))  # a launch choice: never resumed
    if not args.resume:
        preset = PRESETS.get(overrides.get("preset", TrainConfig.preset))
        defaults = preset.defaults if preset else {}  # a preset's tuned knobs, under the flags
        return TrainConfig.from_dict({**defaults, **overrides}).validate(), None
    from gan_tui import checkpoint as ckpt  # torch: only needed to resume

    path = ckpt.find_checkpoint(args.resume, TrainConfig().runs_root, flag="--resume").absolute()
    saved = ckpt.config_of(ckpt.load_checkpoint(path), path)
    merged = saved.to_dict()
    run_dir, new = ckpt.resume_run_dir(path, saved.runs_root)
    merged["run_dir"] = str(run_dir)  # keep writing where the run lives
    config = TrainConfig.from_dict({**merged, **overrides}).validate()
    check_resume(saved, config, path, args.force)  # before the engine builds anything
    if new and "run_dir" not in overrides:
        print(f"{PROG}: note: {path} is not in a run's checkpoints/ folder; resuming into a "
              f"new run folder {run_dir}", file=sys.stderr)
    return config, str(path)


def run_train(args: argparse.Namespace) -> int:
    from gan_tui import launch

    in_torchrun = _in_torchrun()
    launch.check(args, in_torchrun)
    if in_torchrun and args.detach:
        raise UsageError("a torchrun rank cannot --detach; use gan-tui train "
                         "--nproc-per-node N (detached by default)")
    config, resume = config_from_args(args)
    check_run_dir(config.run_dir or config.runs_root)  # before anything is built or made
    if config.data_dir:  # a folder of images converts once, with a bar, before the run
        from gan_tui.data import load_data_path

        load_data_path(Path(config.data_dir), config.split, config.invert,
                       progress=sys.stderr.isatty() and _rank_zero())
    if args.nproc_per_node is not None:
        return launch.launch(args, config, resume)
    if args.detach:
        from gan_tui.detach import detach

        return detach(args, config, resume)
    # A torchrun rank never hosts the TUI: rank 0 serves its socket for `gan-tui attach`.
    if in_torchrun or args.headless or not (sys.stdout.isatty() and sys.stdin.isatty()):
        from gan_tui.headless import run_headless

        return run_headless(config, resume=resume, force=args.force)
    from gan_tui.tui.app import run_tui

    return run_tui(config, resume=resume, force=args.force, on_hangup=args.on_hangup)


def _in_torchrun() -> bool:
    """This process is one of several torchrun ranks (WORLD_SIZE > 1; see train/dist.py)."""
    return os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1")


def _rank_zero() -> bool:
    """False on torchrun ranks other than 0: they fail as rank 0 does, silently."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def _with_default_command(argv: list[str], commands: Sequence[str]) -> list[str]:
    """`gan-tui --epochs 3` means `gan-tui train --epochs 3`."""
    if argv and (argv[0] in commands or argv[0] in ("-h", "--help", "--version")):
        return argv
    return ["train", *argv]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    args = parser.parse_args(_with_default_command(list(sys.argv[1:] if argv is None else argv),
                                                   list(subparsers.choices)))
    try:
        return args.func(args)
    except GanTuiError as exc:
        if _rank_zero():
            print(f"{PROG}: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
