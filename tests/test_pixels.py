"""Real pixels (issue 18): detecting a terminal's graphics protocol without ever hanging,
and the `pixels` renderer in the digits panel's cycle only where it can show.

A fake terminal on a real pty answers (or does not answer) the queries.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import numpy as np
import pytest

from gan_tui.config import TrainConfig
from gan_tui.events import Samples
from gan_tui.tui import pixels
from gan_tui.tui.app import GanTuiApp
from gan_tui.tui.widgets import DigitsPanel
from tests.test_tui import SIZE, run_async, wait_exited

XTERM = {"TERM": "xterm-256color"}


@pytest.mark.parametrize("env, expected", [
    ({"TERM": "xterm-kitty"}, "kitty"),
    ({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "1"}, "kitty"),
    ({"TERM": "xterm-ghostty"}, "kitty"),
    ({"TERM": "tmux-256color", "KITTY_WINDOW_ID": "1"}, pixels.ASK),  # tmux passes no kitty images
    ({"TERM": "xterm-kitty", "TMUX": "/tmp/tmux-0/default,1,0"}, pixels.ASK),
    ({"TERM": "xterm-256color"}, pixels.ASK),
    ({"TERM": "dumb"}, None),
    ({"TERM": "linux"}, None),
    ({}, None),
    ({"TERM": "xterm-256color", "TERM_PROGRAM": "textual"}, None),  # a browser tab
    ({"TERM": "xterm-kitty", "GAN_TUI_PIXELS": "off"}, None),
    ({"TERM": "dumb", "GAN_TUI_PIXELS": "sixel"}, "sixel"),
    ({"TERM": "xterm", "GAN_TUI_PIXELS": "Kitty"}, "kitty"),
])
def test_the_environment_decides_when_it_can(env, expected):
    assert pixels.from_environment(env) == expected


@pytest.mark.parametrize("reply, in_tmux, expected", [
    (b"\x1b[?62;4;22c", False, "sixel"),  # foot
    (b"\x1b[?65;4;6;18;22c", False, "sixel"),  # WezTerm
    (b"\x1b[?63;1;2;4;6;9;15;22c", False, "sixel"),  # xterm -ti vt340
    (b"\x1b[?1;2c", False, None),  # xterm without sixel
    (b"\x1b[?64;14c", False, None),  # 14 is not 4
    (b"\x1b_Gi=31;OK\x1b\\\x1b[?62;c", False, "kitty"),
    (b"\x1b_Gi=31;OK\x1b\\\x1b[?62;c", True, None),
    (b"", False, None),
])
def test_what_the_answers_mean(reply, in_tmux, expected):
    assert pixels.parse_reply(reply, in_tmux) == expected


class FakeTerminal:
    """The far end of a pty: reads the queries and answers `reply` after `delay_s`
    (or never, for None)."""

    def __init__(self, reply: bytes | None, delay_s: float = 0.0) -> None:
        self.master, self.slave = os.openpty()
        self.asked = b""
        self._thread = threading.Thread(target=self._serve, args=(reply, delay_s), daemon=True)
        self._thread.start()

    def _serve(self, reply: bytes | None, delay_s: float) -> None:
        with contextlib.suppress(OSError):  # closed under it: the test is over
            while pixels.DA1_QUERY not in self.asked:
                chunk = os.read(self.master, 1024)
                if not chunk:
                    return
                self.asked += chunk
            if reply is not None:
                time.sleep(delay_s)
                os.write(self.master, reply)

    def close(self) -> None:
        self._thread.join(timeout=5)  # its answer written (it was asked in every test)
        os.close(self.slave)
        os.close(self.master)


@pytest.fixture
def terminal():
    made: list[FakeTerminal] = []

    def make(reply: bytes | None, delay_s: float = 0.0) -> FakeTerminal:
        made.append(FakeTerminal(reply, delay_s))
        return made[-1]

    yield make
    for fake in made:
        fake.close()


def test_a_sixel_terminal_is_found_by_asking(terminal):
    fake = terminal(b"\x1b[?62;4;22c")
    started = time.monotonic()
    assert pixels.detect(XTERM, fake.slave, timeout_s=5) == "sixel"
    assert time.monotonic() - started < 2  # the answer ends the wait, not the timeout
    assert fake.asked.endswith(pixels.KITTY_QUERY + pixels.DA1_QUERY)


def test_a_kitty_graphics_answer(terminal):
    fake = terminal(b"\x1b_Gi=31;OK\x1b\\\x1b[?62;22c")
    assert pixels.detect(XTERM, fake.slave, timeout_s=5) == "kitty"


@pytest.mark.parametrize("reply", [None, b"\x1b[?6", b"xyz" * 100])
def test_a_silent_or_garbled_terminal_costs_at_most_the_timeout(terminal, reply):
    fake = terminal(reply)
    started = time.monotonic()
    assert pixels.detect(XTERM, fake.slave, timeout_s=0.3) is None
    assert time.monotonic() - started < 1.5


def test_an_answer_slower_than_the_timeout_means_text(terminal):
    fake = terminal(b"\x1b[?62;4c", delay_s=1.0)  # a very slow SSH link
    assert pixels.detect(XTERM, fake.slave, timeout_s=0.2) is None


def test_asking_leaves_the_terminal_modes_as_they_were(terminal):
    import termios

    fake = terminal(b"\x1b[?62;4c")
    before = termios.tcgetattr(fake.slave)
    pixels.detect(XTERM, fake.slave, timeout_s=5)
    assert termios.tcgetattr(fake.slave) == before


def test_not_a_terminal_means_no_question():
    # pytest's stdin/stdout are not a terminal: nothing is asked, nothing waited for
    assert pixels.detect(XTERM) is None


def test_the_grid_image():
    images = np.zeros((16, 28, 28), dtype=np.float32)
    images[5] = 1.0
    grid = pixels.grid_image(images)
    assert grid.size == (4 * 30 - 2, 4 * 30 - 2)
    array = np.asarray(grid.convert("L"))
    assert array[30 + 5, 30 + 5] == 255 and array[5, 5] == 0  # digit 5: row 1, column 1
    assert array[:, 28:30].max() == 0  # the gaps stay dark


# ------------------------------------------------------------------ in the dashboard


async def cycle(app: GanTuiApp) -> list[str]:
    """The digit renderers `r` goes through, from the first back to it."""
    async with app.run_test(size=SIZE) as pilot:
        digits = app.query_one(DigitsPanel)
        seen = [digits.mode]
        for _ in range(6):
            await pilot.press("r")
            if digits.mode == seen[0]:
                break
            seen.append(digits.mode)
        await pilot.press("q")
        await wait_exited(app)
    return seen


@run_async
async def test_without_graphics_r_cycles_the_text_renderers() -> None:
    app = GanTuiApp(TrainConfig(), autostart=False)
    assert await cycle(app) == ["blocks", "braille", "ascii"]


@run_async
async def test_with_graphics_r_includes_pixels_and_an_image_draws_them() -> None:
    app = GanTuiApp(TrainConfig(), autostart=False)
    app.pixels = "sixel"
    assert await cycle(app) == ["blocks", "braille", "ascii", "pixels"]

    app = GanTuiApp(TrainConfig(), autostart=False)
    app.pixels = "kitty"
    async with app.run_test(size=SIZE) as pilot:
        digits = app.query_one(DigitsPanel)
        for _ in range(3):
            await pilot.press("r")
        assert digits.mode == "pixels" and not digits.query("#pixels")  # no digits yet
        images = np.linspace(-1, 1, 16 * 28 * 28, dtype=np.float32).reshape(16, 28, 28)
        app.connection.feed(Samples(epoch=0, global_step=5, images=images, fixed=True))
        app.dashboard.poll_events()
        await pilot.pause()
        image = digits.query_one("#pixels")
        assert type(image).__name__ == "TGPImage"
        assert image.image.size == (118, 118)
        assert "r pixels" in str(digits.border_subtitle)
        await pilot.press("r")  # back to text: the image goes
        await pilot.pause()
        assert digits.mode == "blocks" and not digits.query("#pixels")
        await pilot.press("q")
        await wait_exited(app)
