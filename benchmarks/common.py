"""Shared pieces: result rows, alternating repeats, the machine, the table."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BATCH = 64  # the seed's batch size


@dataclass
class Row:
    """One line of the table: `ours` against `baseline`, and whether `target` holds.

    `ratio` is ours / baseline unless the benchmark says otherwise (for speed it
    is the median of the per-repeat ratios, which is steadier than a ratio of
    medians when the machine's load drifts during the run).
    """

    name: str
    baseline_label: str
    baseline: float | None
    ours: float | None
    unit: str
    target: str
    passed: bool | None
    ratio: float | None = None
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.baseline and self.ours is not None:
            self.ratio = self.ours / self.baseline


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def median_interval(values: list[float], confidence: float = 0.95
                    ) -> tuple[float, float] | None:
    """A distribution-free confidence interval for the median: the order statistics
    x(j), x(n+1-j) with the largest j where 2 P(Binomial(n, 1/2) < j) <= 1 - confidence.
    None below 6 values (even the full range covers less than 95%)."""
    ordered, n = sorted(values), len(values)
    alpha, below, j = 1 - confidence, 0.0, 0
    while j < n // 2:
        below += math.comb(n, j) / 2**n  # P(B <= j), so x(j + 1) is allowed if small
        if 2 * below > alpha:
            break
        j += 1
    return (ordered[j - 1], ordered[n - j]) if j else None


def interval_text(ratios: list[float]) -> str:
    """'; 95% interval of the median a-b' to end a row's note, or '' for too few repeats."""
    interval = median_interval(ratios)
    return f"; 95% interval of the median {interval[0]:.2f}-{interval[1]:.2f}" \
        if interval else ""


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) without numpy."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def alternate(runs: dict[str, Callable[[int], float]], repeats: int,
              log: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Call each run once per repeat, in turn (A B A B ...; the order flips every
    repeat so neither side always goes first), and collect what each returns."""
    names = list(runs)
    results: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeats):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            value = runs[name](rep)
            results[name].append(value)
            if log:
                log(f"  repeat {rep + 1}/{repeats} {name}: {value:,.4g}")
    return results


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine_info(device: str) -> dict[str, str]:
    import torch

    info = {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "device": device,
        "load average (1/5/15 min)": load_average(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] > cores
    except OSError:
        busy = False
    if busy and torch.get_num_threads() > 1 and not device.startswith("cuda"):
        info["warning"] = (f"the load exceeds {cores} cores: multi-threaded CPU timings thrash "
                           "(OpenMP threads wait for each other's time slices); --threads 1 "
                           "gives steadier ratios on a shared machine")
    return info


def _fmt(value: float | None, unit: str) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    if unit == "img/s":
        return f"{value:,.0f} img/s"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "":
        return f"{value:g}"
    return f"{value:.3g} {unit}"


def table_lines(rows: list[Row], machine: dict[str, str]) -> list[str]:
    """The result table (GitHub markdown, readable as plain text) and the machine."""
    header = ["benchmark", "baseline", "gan-tui", "ratio", "target", "result"]
    body = []
    for row in rows:
        ratio = "-" if row.ratio is None or row.ratio != row.ratio else f"{row.ratio:.2f}x"
        result = {True: "pass", False: "MISS", None: "n/a"}[row.passed]
        baseline = f"{_fmt(row.baseline, row.unit)} ({row.baseline_label})"
        body.append([row.name, baseline, _fmt(row.ours, row.unit), ratio, row.target, result])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in body]
    notes = [f"- {row.name}: {row.note}" for row in rows if row.note]
    if notes:
        out += ["", *notes]
    out += ["", "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine.items())]
    return out


class Log:
    """Progress lines on stderr (the table goes to stdout), with elapsed time."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.began = time.monotonic()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.began:6.1f}s] {message}", file=sys.stderr,
                  flush=True)
