"""Errors a user can cause and fix. The CLI prints each as one line, no traceback."""

from __future__ import annotations


class GanTuiError(Exception):
    """Base class: the message is a complete, user-facing sentence."""


def one_line(text: str) -> str:
    """`text` with newlines and other control characters escaped (they may come from a
    file name or an argument), so it prints as one line and cannot drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type name if it has none), for
    one-line messages about failures deep inside torch or a parser; a long one is cut at
    a word and marked with '...'."""
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0] if " " in line[:limit] else line[:limit]
    return cut.rstrip(" ,;:") + "..."


class ConfigError(GanTuiError):
    """A setting is out of range or contradicts another."""


class UsageError(ConfigError):
    """The command line alone is wrong: a value no run accepts (`--epochs 0`, `--lr-g nan`),
    or flags that contradict each other. Exit 2, as argparse's own usage errors; problems
    found only by looking at a file, a folder or the machine are other errors (exit 1)."""


class DataError(GanTuiError):
    """A dataset is missing, malformed or cannot be fetched."""


class CheckpointError(GanTuiError):
    """A checkpoint cannot be read, written or does not fit the run."""
