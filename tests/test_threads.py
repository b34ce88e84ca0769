"""Several runs on one machine (issue 12): each takes its fair share of the cores."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan_tui.process import Presence, ThreadShare, fair_share


@pytest.mark.parametrize(("cores", "runs", "ranks", "want"), [
    (2, 1, 1, 2), (2, 2, 1, 1), (2, 3, 1, 1), (16, 3, 1, 5), (16, 1, 4, 4), (8, 2, 2, 2),
])
def test_fair_share(cores, runs, ranks, want):
    assert fair_share(cores, runs, ranks) == want


HOLD = ("import sys,time;from pathlib import Path;from gan_tui.process import Presence;"
        "p=Presence(Path(sys.argv[1]));p.enter();print('in',flush=True);time.sleep(60)")


def test_presence_counts_live_runs_only(tmp_path: Path):
    me = Presence(tmp_path)
    me.enter()
    assert me.count() == 1
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "in"
        assert me.count() == 2
        other.kill()  # no chance to tidy up: its file stays, its lock goes
        other.wait()
        assert me.count() == 1
    finally:
        other.kill()
        me.leave()
    assert not (tmp_path / "active").exists() or not any((tmp_path / "active").iterdir())


def test_a_run_entering_while_another_counts_is_not_taken_for_dead(tmp_path: Path,
                                                                   monkeypatch):
    counter, entering = Presence(tmp_path), Presence(tmp_path)
    counter.enter()
    lock = fcntl.flock

    def count_first(fd: int, operation: int) -> None:
        counter.count()  # the other run counts between our open() and our lock
        lock(fd, operation)

    monkeypatch.setattr(os, "getpid", lambda: 4_000_000)  # another run's pid
    monkeypatch.setattr(fcntl, "flock", count_first)
    try:
        entering.enter()
        monkeypatch.undo()
        assert counter.count() == 2
        assert entering.count() == 2
    finally:
        entering.leave()
        counter.leave()


def test_auto_threads_follow_the_runs_on_the_machine(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the suite's own ceiling
    before = torch.get_num_threads()
    me = Presence(tmp_path)
    me.enter()
    share = ThreadShare("auto", me, cores=2)
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert share.poll(now=0.0) in (1, 2)
        assert other.stdout.readline().strip() == "in"
        assert share.poll(now=1.0) is None  # not due yet: between checks it costs nothing
        assert share.poll(now=10.0) == 1 and torch.get_num_threads() == 1
        assert "2 cores shared by 2 runs" in share.describe()
        other.kill()
        other.wait()
        assert share.poll(now=20.0) == 2 and torch.get_num_threads() == 2
    finally:
        other.kill()
        me.leave()
        torch.set_num_threads(before)


def test_fixed_threads_ignore_other_runs(tmp_path: Path):
    before = torch.get_num_threads()
    try:
        share = ThreadShare(1, None, cores=2)
        assert share.poll(now=0.0) == 1 and torch.get_num_threads() == 1
        assert share.describe() == "1 thread (--threads 1)"
    finally:
        torch.set_num_threads(before)


def test_omp_num_threads_is_a_ceiling_for_auto(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert ThreadShare("auto", None, cores=8).choose() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    assert ThreadShare("auto", None, cores=8).choose() == 8


def test_a_run_says_what_it_chose_and_refuses_nonsense(tmp_path: Path):
    from tests.conftest import run_cli

    out = run_cli("train", "--headless", "--limit", "256", "--epochs", "1", "--threads", "1",
                  "--quality-samples", "0", "--run-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Using 1 thread (--threads 1)" in out.stdout
    for bad in ("0", "many"):
        refused = run_cli("train", "--headless", "--threads", bad, cwd=tmp_path)
        assert refused.returncode == 2 and "--threads" in refused.stderr
        assert "Traceback" not in refused.stderr
