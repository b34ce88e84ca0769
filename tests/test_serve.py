"""The control endpoint (issue 13): wire format, the socket server, locks and status.

Real Unix sockets and real frames; the training side is a plain list of events here
(tests/test_detach.py drives real training processes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gan_tui import events as ev
from gan_tui.errors import ConfigError
from gan_tui.serve import protocol
from gan_tui.serve.client import ControlClient
from gan_tui.serve.journal import Journal
from gan_tui.serve.registry import RunLock, is_locked, live_state, lock_holder, write_status
from gan_tui.serve.server import ControlServer, FrameReader
from gan_tui.serve.status import StatusWriter

FUZZ = settings(max_examples=int(os.environ.get("GAN_TUI_FUZZ_EXAMPLES", "300")),
                deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stats(step: int) -> ev.StepStats:
    return ev.StepStats(epoch=0, epochs=2, batch=step, steps_per_epoch=8, global_step=step,
                        g_loss=0.7, d_loss=1.3, d_real=0.5, d_fake=0.4, img_per_s=1000.0,
                        elapsed_s=1.0)


def started() -> ev.Started:
    return ev.Started(run_dir="/r", run_name="r", preset="seed", device="cpu", dataset="b",
                      num_images=512, steps_per_epoch=8, epochs=2, start_epoch=0,
                      global_step=0, resumed_from=None, config={"seed": 1, "lr_g": 1e-4},
                      history=({"epoch": 1, "g_loss": float("nan")},))


EXAMPLES = [
    protocol.Hello(1, 42, "/runs/x"), protocol.HistoryDone(3), started(), stats(5),
    ev.EpochEnd(0, 2, 8, 0.7, 1.3, 0.5, 0.4, 900.0, 0.5),
    ev.Samples(1, 16, np.linspace(-1, 1, 16 * 28 * 28, dtype=np.float32).reshape(16, 28, 28),
               fixed=True, labels=tuple(i % 10 for i in range(16))),
    ev.Samples(1, 16, np.zeros((4, 28, 28), np.float32), fixed=False),
    ev.Quality(0, 8, 12.5, 8.1, 0.99, 0.9, tuple(range(10)), 1000, 0.2),
    ev.CheckpointSaved("/r/checkpoints/last.pt", 1, 16, "epoch"), ev.Paused(3),
    ev.Resumed(3), ev.Finished("stopped", 1, 16, None, "/r", None), ev.Error("boom", False),
    ev.Diverged(0, 3, "diverged", None), ev.Pause(), ev.Resume(), ev.Save("request"),
    ev.Sample(count=16, digit=3), ev.Sample(), ev.Stop("stop"),
]


def same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            if x.shape != y.shape or np.abs(x - y).max(initial=0) > 1 / 127.5 / 2 + 1e-6:
                return False
        elif x != y and not (f.name == "history" and repr(x) == repr(y)):
            return False
    return True


# ------------------------------------------------------------------ protocol


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_kind_round_trips(message):
    assert same(protocol.decode(protocol.encode(message)), message)


def test_every_event_and_command_has_a_kind():
    kinds = set(protocol.KIND_OF)
    for alias in (ev.Event, ev.Command):
        assert set(alias.__args__) <= kinds  # a new event must be taught to the protocol


def test_samples_travel_as_uint8_not_json_floats():
    images = np.random.default_rng(0).uniform(-1, 1, (16, 28, 28)).astype(np.float32)
    frame = protocol.encode(ev.Samples(0, 1, images, fixed=True))
    assert len(frame) < 16 * 28 * 28 + 200  # one byte a pixel and a short header


@FUZZ
@given(st.binary(max_size=400))
def test_decoder_on_arbitrary_bytes_raises_only_protocol_error(data):
    with contextlib.suppress(protocol.ProtocolError):
        protocol.decode(data)


@FUZZ
@given(st.sampled_from(EXAMPLES), st.data())
def test_decoder_on_mutated_frames(message, data):
    frame = bytearray(protocol.encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    with contextlib.suppress(protocol.ProtocolError):
        protocol.decode(bytes(frame[:cut]))


@FUZZ
@given(st.dictionaries(st.text(max_size=12), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids,
                                                              max_size=4), max_leaves=12)),
       st.sampled_from(sorted(protocol.CLASS_OF)))
def test_decoder_checks_field_types(fields, kind):
    import json

    text = json.dumps(fields).encode()
    body = len(text).to_bytes(4, "big") + text
    try:
        message = protocol.decode_body(kind, body)
    except protocol.ProtocolError:
        return
    assert type(message) is protocol.CLASS_OF[kind]


def test_oversized_frame_is_refused_from_its_header():
    header = protocol.HEADER.pack(protocol.MAGIC, protocol.VERSION, 3, protocol.MAX_FRAME + 1)
    with pytest.raises(protocol.ProtocolError, match="over the"):
        FrameReader().feed(header)


def test_reader_splits_a_stream_at_any_boundary():
    stream = b"".join(protocol.encode(m) for m in EXAMPLES)
    reader = FrameReader()
    got = []
    for i in range(0, len(stream), 7):
        got += reader.feed(stream[i:i + 7])
    assert len(got) == len(EXAMPLES) and all(map(same, got, EXAMPLES))


# ------------------------------------------------------------------- journal


def test_journal_keeps_history_bounded_and_in_order():
    journal = Journal(max_stats=100)
    journal.add(started())
    for step in range(1, 1001):
        journal.add(stats(step))
        if step % 100 == 0:
            journal.add(ev.Samples(0, step, np.zeros((16, 28, 28), np.float32), fixed=True))
    events = journal.snapshot()
    steps = [e.global_step for e in events if isinstance(e, ev.StepStats)]
    assert 50 <= len(steps) <= 100 and steps == sorted(steps) and steps[-1] == 1000
    samples = [e for e in events if isinstance(e, ev.Samples)]
    assert [s.global_step for s in samples] == [1000]  # only the newest grid
    assert isinstance(events[0], ev.Started)


def test_journal_forgets_a_pause_once_resumed():
    journal = Journal()
    for event in (started(), ev.Paused(3), ev.Resumed(3), ev.Paused(5)):
        journal.add(event)
    assert [type(e) for e in journal.snapshot()] == [ev.Started, ev.Resumed, ev.Paused]


# -------------------------------------------------------------------- server


@pytest.fixture
def sock_dir():
    # AF_UNIX paths must be short: pytest's tmp_path can be too long.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gt-") as folder:
        yield Path(folder)


@pytest.fixture
def server(sock_dir, tmp_path):
    commands: list = []
    lines: list[str] = []
    srv = ControlServer(sock_dir / "c.sock", tmp_path, commands.append, lines.append).start()
    srv.commands, srv.lines = commands, lines  # type: ignore[attr-defined]
    yield srv
    srv.close()


def read_until(client: ControlClient, kind: type, limit: int = 10_000) -> list:
    got = []
    for message in client.messages():
        got.append(message)
        if isinstance(message, kind) or len(got) >= limit:
            break
    return got


def test_socket_is_owner_only(server):
    assert stat.S_IMODE(server.socket_path.stat().st_mode) == 0o600


def test_viewer_gets_hello_history_then_live_events(server):
    server.sink(started())
    for step in (1, 2, 3):
        server.sink(stats(step))
    server.sink(ev.Paused(3))
    with ControlClient.connect(server.socket_path) as client:
        history = read_until(client, protocol.HistoryDone)
        assert isinstance(history[0], protocol.Hello) and history[0].pid == os.getpid()
        assert [type(m) for m in history[1:]] == [ev.Started, ev.StepStats, ev.StepStats,
                                                  ev.StepStats, ev.Paused,
                                                  protocol.HistoryDone]
        server.sink(ev.Resumed(3))
        live = read_until(client, ev.Resumed)
        assert live == [ev.Resumed(3)]


def test_commands_reach_the_trainer(server):
    with ControlClient.connect(server.socket_path) as client:
        read_until(client, protocol.HistoryDone)
        for command in (ev.Pause(), ev.Sample(count=16, digit=7), ev.Stop("stop")):
            assert client.send(command)
        deadline = time.monotonic() + 10
        while len(server.commands) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert server.commands == [ev.Pause(), ev.Sample(count=16, digit=7), ev.Stop("stop")]


@pytest.mark.parametrize("junk", [
    b"GET / HTTP/1.1\r\n\r\n",
    protocol.encode(ev.Paused(1)),  # an event is not a command
    protocol.HEADER.pack(protocol.MAGIC, protocol.VERSION, 200, 0),  # unknown kind
    protocol.HEADER.pack(protocol.MAGIC, 9, 14, 0),  # a future version
])
def test_bad_message_closes_that_viewer_only(server, junk):
    other = ControlClient.connect(server.socket_path)
    read_until(other, protocol.HistoryDone)
    bad = socket.socket(socket.AF_UNIX)
    bad.connect(str(server.socket_path))
    bad.sendall(junk)
    bad.settimeout(10)
    while bad.recv(65536):  # the server closes it: recv returns b"" at the end
        pass
    bad.close()
    assert any("closed a viewer" in line for line in server.lines)
    server.sink(ev.Resumed(9))
    assert read_until(other, ev.Resumed) == [ev.Resumed(9)]  # the other viewer is fine
    other.close()


def test_a_socket_that_cannot_be_bound_is_an_error_that_keeps_no_descriptor(tmp_path):
    too_long = tmp_path / ("x" * 120 + ".sock")  # over AF_UNIX's ~108-byte path limit
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(OSError):
            ControlServer(too_long, tmp_path, lambda command: None, lambda line: None).start()
    assert set(os.listdir("/proc/self/fd")) == before


def test_other_uid_is_refused_before_anything_is_read(sock_dir, tmp_path):
    commands: list = []
    lines: list[str] = []
    srv = ControlServer(sock_dir / "c.sock", tmp_path, commands.append, lines.append,
                        allowed_uid=os.getuid() + 12345).start()
    try:
        client = ControlClient.connect(srv.socket_path)
        client.send(ev.Stop("stop"))
        assert list(client.messages()) == []  # closed without a Hello
        client.close()
        assert commands == [] and "refused a connection from uid" in lines[0]
    finally:
        srv.close()


@pytest.mark.skipif(os.getuid() != 0 or not Path("/usr/bin/setpriv").exists(),
                    reason="needs root and setpriv to run a client as another user")
def test_another_user_cannot_connect(sock_dir, tmp_path):
    """A real second user (nobody): the 0700 folder and 0600 socket keep it out; even
    with the folder opened up, the uid check closes the connection unread."""
    commands: list = []
    lines: list[str] = []
    srv = ControlServer(sock_dir / "c.sock", tmp_path, commands.append, lines.append).start()
    try:
        os.chmod(sock_dir, 0o755)
        os.chmod(srv.socket_path, 0o666)
        code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1])\n"
                "try:\n s.sendall(bytes.fromhex(sys.argv[2]));s.settimeout(10)\n"
                " print(len(s.recv(100)))\nexcept OSError:\n print(0)")
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              sys.executable, "-c", code, str(srv.socket_path),
                              protocol.encode(ev.Stop("stop")).hex()],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "0", out.stderr  # connection closed, nothing sent
        assert commands == [] and "refused a connection from uid 65534" in lines[0]
    finally:
        srv.close()


def test_stopped_viewer_never_blocks_the_sink(server):
    """A viewer that reads nothing (e.g. SIGSTOPped): step statistics are dropped for it,
    the sink returns at once, and the other events still wait for it."""
    stuck = socket.socket(socket.AF_UNIX)
    stuck.connect(str(server.socket_path))
    deadline = time.monotonic() + 10
    while server.viewers == 0 and time.monotonic() < deadline:  # accepted by the server
        time.sleep(0.01)
    big = np.zeros((256, 28, 28), np.float32)
    for step in range(20_000):
        server.sink(stats(step))
        if step % 1000 == 0:
            server.sink(ev.Samples(0, step, big, fixed=True))
    server.sink(ev.Finished("completed", 2, 20_000, None, "/r", None))
    stuck.settimeout(10)
    reader = FrameReader()
    got: list = []
    while not any(isinstance(m, ev.Finished) for m in got):
        got += reader.feed(stuck.recv(65536))
    stuck.close()
    kept_stats = sum(isinstance(m, ev.StepStats) for m in got)
    assert kept_stats < 20_000  # some were dropped for the slow viewer
    assert sum(isinstance(m, ev.Samples) for m in got) == 20  # none lost


# ------------------------------------------------------------ lock and status


def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    with RunLock(tmp_path):
        assert is_locked(tmp_path) and lock_holder(tmp_path) == os.getpid()
        with pytest.raises(ConfigError, match=f"in use by process {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert not is_locked(tmp_path)
    RunLock(tmp_path).acquire()  # free again


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    code = ("import sys,time;from pathlib import Path;from gan_tui.serve.registry import "
            "RunLock;lock=RunLock(Path(sys.argv[1]));lock.acquire();print('held',flush=True);"
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert is_locked(tmp_path)
        write_status(tmp_path, {"state": "running", "pid": holder.pid})
        assert live_state(tmp_path) == "running"
        holder.kill()
        holder.wait()
        assert live_state(tmp_path) == "crashed"  # said running, but nobody holds the lock
        RunLock(tmp_path).acquire()
    finally:
        holder.kill()


def test_status_follows_the_run(tmp_path):
    writer = StatusWriter(tmp_path, None)
    writer(started())
    assert live_state(tmp_path) == "crashed"  # "running" but no process holds the lock
    with RunLock(tmp_path):
        assert live_state(tmp_path) == "running"
        writer(ev.Paused(3))
        assert live_state(tmp_path) == "paused"
        writer(ev.Diverged(0, 4, "x"))
        writer(ev.Paused(4))
        assert live_state(tmp_path) == "diverged"
    writer(ev.Finished("completed", 2, 16, "/r/last.pt", "/r", 16))
    assert live_state(tmp_path) == "done"


def test_threads_do_not_interleave_frames(server):
    """Viewers' commands come from several threads of one client (keys, timers)."""
    with ControlClient.connect(server.socket_path) as client:
        read_until(client, protocol.HistoryDone)
        threads = [threading.Thread(target=lambda: [client.send(ev.Sample(count=16))
                                                    for _ in range(200)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 10
        while len(server.commands) < 800 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert server.commands == [ev.Sample(count=16)] * 800
    assert not server.lines


@pytest.mark.parametrize("fields", [
    {"epoch": 0, "global_step": 1, "images": {"shape": [2**24, 2**24, 2**24]}, "fixed": True},
    {"epoch": 0, "global_step": 1, "images": {"shape": [1, 28, 28]}, "fixed": True,
     "labels": [1e400]},
])
def test_forged_sizes_and_huge_numbers_are_protocol_errors(fields):
    import json

    text = json.dumps(fields).encode().replace(b"1e400", b"1" + b"0" * 400)
    body = len(text).to_bytes(4, "big") + text + b"\0" * 784
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_body(protocol.KIND_OF[ev.Samples], body)
    quality = {"epoch": 0, "global_step": 1, "fid": 10 ** 400, "score": 1, "coverage": 1,
               "confidence": 1, "histogram": [1] * 10, "samples": 1, "seconds": 1}
    text = json.dumps(quality).encode()
    with pytest.raises(protocol.ProtocolError, match="out of range"):
        protocol.decode_body(protocol.KIND_OF[ev.Quality], len(text).to_bytes(4, "big") + text)


def test_the_endpoint_outlives_a_bad_viewer_and_refuses_big_frames_at_the_header(server):
    bad = socket.socket(socket.AF_UNIX)
    bad.connect(str(server.socket_path))
    # a command kind announcing 1 MiB: refused from the 8-byte header, nothing buffered
    bad.sendall(protocol.HEADER.pack(protocol.MAGIC, protocol.VERSION,
                                     protocol.KIND_OF[ev.Stop], 2**20))
    bad.settimeout(10)
    while bad.recv(65536):
        pass
    bad.close()
    assert any("a command of 1,048,576 bytes" in line for line in server.lines)
    with ControlClient.connect(server.socket_path) as late:  # still serving
        assert isinstance(read_until(late, protocol.HistoryDone)[-1], protocol.HistoryDone)


def test_a_viewer_cannot_crash_the_trainer_with_sample_counts(small_config):
    from gan_tui.train import Trainer
    from tests.conftest import Recorder

    recorder = Recorder()
    trainer = Trainer(small_config(epochs=1, quality_samples=0), recorder)
    for count in (-1, 10**6):
        trainer.send(ev.Sample(count=count))
    finished = trainer.run()
    assert finished.reason == "completed"
    errors = [e for e in recorder.of(ev.Error) if "cannot draw" in e.message]
    assert len(errors) == 2 and not any(e.fatal for e in errors)


def test_late_started_is_never_dropped_from_the_journal():
    journal = Journal(max_other=5)
    journal.add(ev.Error("quality scores off", fatal=False))  # before Started
    journal.add(started())
    for step in range(50):
        journal.add(ev.Paused(step))
        journal.add(ev.Resumed(step))
        journal.add(ev.CheckpointSaved("x", 0, step, "request"))
    assert any(isinstance(e, ev.Started) for e in journal.snapshot())


def test_sink_never_raises_for_an_event_too_big_to_send(server):
    with ControlClient.connect(server.socket_path) as client:
        read_until(client, protocol.HistoryDone)
        deadline = time.monotonic() + 10
        while server.viewers == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        huge = np.zeros((30_000, 28, 28), np.float32)  # over MAX_FRAME as uint8
        server.sink(ev.Samples(0, 1, huge, fixed=False))  # must not raise
        server.sink(ev.Paused(1))
        assert read_until(client, ev.Paused) == [ev.Paused(1)]
    assert any("could not send Samples" in line for line in server.lines)
