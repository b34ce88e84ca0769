"""`gan-tui attach [RUN|latest]`: the dashboard on a run that trains in another process.

The viewer connects to the run's control socket (its path is in the run's status.json),
is shown the run's history and then its live events, and sends the same commands as
the in-process dashboard. Quitting it (q, d, a lost terminal) only detaches.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gan_tui.config import TrainConfig
from gan_tui.runs import add_run_arguments, resolve_run, wait_for_socket


def read_config(run_dir: Path) -> TrainConfig:
    """The run's config.json, or the defaults until its Started event says better."""
    try:
        return TrainConfig.from_json((run_dir / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return TrainConfig()


def cmd_attach(args: argparse.Namespace) -> int:
    from gan_tui.tui.app import GanTuiApp, run_app
    from gan_tui.tui.connection import SocketRun

    run_dir = resolve_run(args.run, Path(args.runs_root)).absolute()
    socket_path = wait_for_socket(run_dir)
    config = read_config(run_dir)
    config.run_dir = str(run_dir)
    app = GanTuiApp(config, connection=SocketRun(socket_path, run_dir), handle_signals=True)
    app.view.attached = True
    return run_app(app)


def register(commands: argparse._SubParsersAction) -> None:
    attach = commands.add_parser(
        "attach", help="open the dashboard on a running run (q or d detaches)",
        description="Open the dashboard on a run that trains in another process (started "
        "with --detach, or carried on in the background after its terminal went away): "
        "its history first, then live. Every key works as in the dashboard; q or d "
        "detach (training goes on), x stops the run itself.")
    add_run_arguments(attach)
    attach.set_defaults(func=cmd_attach)
