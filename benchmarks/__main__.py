"""`python -m benchmarks` (`make bench`): run the benchmarks, print the table of ratios.

    python -m benchmarks                 # everything, on the best device (cuda > mps > cpu)
    python -m benchmarks --quick         # a short smoke run (figures are rough)
    python -m benchmarks --device cuda   # on a GPU: adds the per-step sync check
    python -m benchmarks --only speed,startup --repeats 7 --json out.json

Each figure is measured against its baseline in the same run, alternating, and the
median of the repeats is reported. Timings are never asserted: a missed target shows
as MISS in the table; the exit status is 1 only when a benchmark failed to run.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence

from benchmarks.common import Log, Row, machine_info, table_lines

BENCHMARKS = ("speed", "tui", "responsiveness", "startup", "memory", "sync", "scaling",
              "runs", "viewers", "attach", "attached-keys")

FULL = {"steps": 120, "repeats": 15, "warmup": 10, "tui_steps": 156, "tui_epochs": 1,
        "tui_repeats": 16,
        "presses": 10, "startup_repeats": 3, "memory_limit": None, "memory_repeats": 1,
        "scaling_limit": 4096, "scaling_epochs": 3, "scaling_repeats": 3,
        "pairs": 4, "attach_repeats": 5}
QUICK = {"steps": 12, "repeats": 2, "warmup": 3, "tui_steps": 12, "tui_epochs": 1,
         "tui_repeats": 1,
         "presses": 3, "startup_repeats": 1, "memory_limit": 768, "memory_repeats": 1,
         "scaling_limit": 512, "scaling_epochs": 2, "scaling_repeats": 1,
         "pairs": 1, "attach_repeats": 1}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description="gan-tui speed benchmarks, as ratios")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--steps", type=int, help="steps per timed run (speed, sync)")
    parser.add_argument("--repeats", type=int, help="alternating repeats (speed)")
    parser.add_argument("--tui-steps", type=int, help="steps per epoch (TUI vs headless)")
    parser.add_argument("--tui-epochs", type=int,
                        help="epochs timed per turn (TUI vs headless)")
    parser.add_argument("--tui-repeats", type=int,
                        help="alternating pairs of turns (TUI vs headless)")
    parser.add_argument("--presses", type=int, help="rounds of p, p, g (responsiveness)")
    parser.add_argument("--nproc", type=int, default=2,
                        help="torchrun ranks for the scaling row (default 2)")
    parser.add_argument("--threads", type=int,
                        help="torch intra-op threads here and in child processes "
                             "(default: PyTorch's choice, one per core)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and machine here")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first benchmark that fails (tests use this)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def run(argv: Sequence[str] | None = None) -> tuple[list[Row], dict[str, str], list[str]]:
    """Run the chosen benchmarks; return the rows, the machine and any failures."""
    args = build_parser().parse_args(argv)
    import torch

    from gan_tui.train import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    size = dict(QUICK if args.quick else FULL)
    for key in ("steps", "repeats", "tui_steps", "tui_epochs", "tui_repeats", "presses"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)} "
                         f"(choose from {', '.join(BENCHMARKS)})")
    log = Log(args.quiet)
    log(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{'quick' if args.quick else 'full'} run: {', '.join(chosen)}")

    def speed() -> Row:
        from benchmarks.speed import bench_engine_vs_seed

        return bench_engine_vs_seed(device, size["steps"], size["repeats"], size["warmup"], log)

    def tui() -> Row:
        from benchmarks.tui import bench_tui_vs_headless

        return bench_tui_vs_headless(device, size["tui_steps"], size["tui_repeats"],
                                     args.threads, log, epochs=size["tui_epochs"])

    def responsiveness() -> Row:
        from benchmarks.tui import bench_responsiveness

        return bench_responsiveness(device, size["presses"], log)

    def startup() -> Row:
        from benchmarks.startup import bench_startup

        return bench_startup(size["startup_repeats"], args.threads, log)

    def memory() -> Row:
        from benchmarks.memory import bench_memory

        return bench_memory(device, size["memory_limit"], size["memory_repeats"],
                            args.threads, log)

    def sync() -> Row | None:
        if not device.startswith("cuda"):
            log("sync: skipped (GPU only)")
            return None
        from benchmarks.sync import bench_sync

        return bench_sync(device, size["steps"], log)

    def scaling() -> list[Row]:
        from benchmarks.scaling import bench_scaling

        return bench_scaling(device, args.nproc, size["scaling_limit"], size["scaling_epochs"],
                             size["scaling_repeats"], args.threads, log)

    def runs() -> Row:
        from benchmarks.detach import bench_concurrent_runs

        return bench_concurrent_runs(device, size["pairs"], log)

    def viewers() -> Row:
        from benchmarks.detach import bench_viewers

        return bench_viewers(device, size["pairs"], log)

    def attach() -> Row:
        from benchmarks.detach import bench_attach_history

        return bench_attach_history(size["attach_repeats"], log)

    def attached_keys() -> Row:
        from benchmarks.detach import bench_attached_keys

        return bench_attached_keys(device, size["presses"], log)

    benches: dict[str, Callable[[], Row | list[Row] | None]] = {
        "speed": speed, "tui": tui, "responsiveness": responsiveness, "startup": startup,
        "memory": memory, "sync": sync, "scaling": scaling, "runs": runs, "viewers": viewers,
        "attach": attach, "attached-keys": attached_keys,
    }
    rows: list[Row] = []
    failures: list[str] = []
    machine = machine_info(device)  # the load average as the run begins
    for name in chosen:
        try:
            row = benches[name]()
        except Exception as exc:
            if args.strict:
                raise
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            log(f"{name} FAILED:\n{traceback.format_exc()}")
            continue
        if isinstance(row, list):
            rows.extend(row)
        elif row is not None:
            rows.append(row)
    machine["load average at the end"] = machine_info(device)["load average (1/5/15 min)"]
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"machine": machine, "failures": failures,
                       "rows": [row.__dict__ for row in rows]}, fh, indent=2)
    return rows, machine, failures


def main(argv: Sequence[str] | None = None) -> int:
    rows, machine, failures = run(argv)
    print()
    print("\n".join(table_lines(rows, machine)))
    for failure in failures:
        print(f"FAILED {failure}")
    sys.stdout.flush()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
