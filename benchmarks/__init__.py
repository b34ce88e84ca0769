"""gan-tui's benchmarks, every figure a ratio against a baseline measured side by
side in the same run (alternating, several repeats, median).

`python -m benchmarks` (`make bench`) runs the speed benchmarks and prints one table:
engine vs the seed's own loop, TUI vs headless, key press to screen, start-up to
the first frame, peak memory, and on a GPU the per-step host-device sync check;
`--quick` is a short smoke run, `--device cuda` measures on a GPU (see
`__main__.py`). `python -m benchmarks.quality` (`make bench-quality`) compares the
presets' sample quality for the same training time.
"""
