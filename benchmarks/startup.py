"""Start-up: `gan-tui` launched in a pseudo-terminal until its first frame is drawn,
against `python -c "import torch"` (the floor for any PyTorch program)."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import REPO, Row, alternate, median
from benchmarks.procs import child_env, quit_tui, spawn_tui

TARGET_S = 3.0


def first_frame_seconds(env: dict[str, str], rep: int, timeout: float = 120) -> float:
    """Seconds from spawning `gan-tui --limit 512 --run-dir D` to the header bar (which
    names the run folder) appearing in the terminal: the first drawn frame."""
    import pexpect

    with tempfile.TemporaryDirectory(prefix="gan-tui-bench-") as tmp:
        run_dir = Path(tmp) / f"startup-run-{rep}"
        began = time.perf_counter()
        child = spawn_tui(["--limit", "512", "--run-dir", str(run_dir)], env)
        try:
            child.expect(re.escape(run_dir.name), timeout=timeout)
            seconds = time.perf_counter() - began
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            raise RuntimeError("gan-tui drew no frame naming its run folder") from exc
        finally:
            quit_tui(child)
        return seconds


def import_torch_seconds(env: dict[str, str], rep: int) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, env=env, cwd=str(REPO),
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def bench_startup(repeats: int, threads: int | None, log: Callable[[str], None]) -> Row:
    env = child_env(threads)
    log(f"start-up: {repeats} x (python -c 'import torch', gan-tui to first frame)")
    runs = {
        "import torch": lambda rep: import_torch_seconds(env, rep),
        "gan-tui": lambda rep: first_frame_seconds(env, rep),
    }
    results = alternate(runs, repeats, log)
    ours = median(results["gan-tui"])
    return Row(
        name="start-up to first frame", baseline_label='python -c "import torch"',
        baseline=median(results["import torch"]), ours=ours, unit="s",
        target=f"<= {TARGET_S:.1f} s", passed=ours <= TARGET_S,
        note=f"{repeats} alternating repeats, spawn to the header bar in a pseudo-terminal; "
             f"gan-tui {', '.join(f'{s:.2f}' for s in results['gan-tui'])} s, import torch "
             f"{', '.join(f'{s:.2f}' for s in results['import torch'])} s",
        samples=results,
    )
