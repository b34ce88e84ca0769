"""Peak resident memory of a headless training run against the seed's loop alone."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import REPO, Row, median
from benchmarks.procs import child_env, gan_tui_command

TARGET_MIB = 1536  # 1.5 GiB

# A fresh wrapper per measurement, so RUSAGE_CHILDREN holds this one child only.
_WRAPPER = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def peak_rss_mib(command: list[str], env: dict[str, str], timeout: float = 900) -> float:
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *command], capture_output=True,
                         text=True, env=env, cwd=str(REPO), timeout=timeout, check=True)
    code, kib = out.stdout.split()[-2:]
    if code != "0":
        raise RuntimeError(f"{' '.join(command)} exited {code}")
    return int(kib) / 1024  # Linux reports ru_maxrss in KiB


def bench_memory(device: str, limit: int | None, repeats: int, threads: int | None,
                 log: Callable[[str], None]) -> Row:
    env = child_env(threads)
    steps = (limit or 10_000) // 64
    what = f"{limit:,} digits" if limit else "all 10,000 digits"
    log(f"memory: peak RSS of a headless epoch on {what} vs the seed loop ({steps} steps)")
    ours, base = [], []
    for rep in range(repeats):
        with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
            args = ["--headless", "--epochs", "1", "--seed", str(rep), "--device", device,
                    "--run-dir", str(Path(tmp) / "run")]
            if limit:
                args += ["--limit", str(limit)]
            ours.append(peak_rss_mib(gan_tui_command() + args, env))
        base.append(peak_rss_mib([sys.executable, "-m", "benchmarks.seed_loop", "--steps",
                                  str(steps), "--device", device], env))
        log(f"  repeat {rep + 1}/{repeats}: gan-tui {ours[-1]:,.0f} MiB, "
            f"seed loop {base[-1]:,.0f} MiB")
    peak = max(ours)
    return Row(
        name="peak RSS, headless epoch", baseline_label="seed loop",
        baseline=median(base), ours=peak, unit="MiB", target=f"<= {TARGET_MIB:,} MiB",
        passed=peak <= TARGET_MIB,
        note=f"ru_maxrss of `gan-tui --headless --epochs 1` on {what} (the largest of "
             f"{repeats}) vs the seed's loop for {steps} steps in its own process",
        samples={"gan-tui": ours, "seed loop": base},
    )
