"""Paths as a user would type them."""

from __future__ import annotations

from pathlib import Path


def display_path(path: Path) -> str:
    """Relative to the working directory when inside it (as typed), else absolute."""
    path = path.absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
