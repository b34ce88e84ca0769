"""Real pixels for the digits on terminals with a graphics protocol (textual-image).

`detect()` decides once, before Textual starts reading the terminal, whether the digits
panel may offer a `pixels` renderer: "sixel" (foot, WezTerm, iTerm2, Konsole, xterm -ti
vt340, mlterm, tmux built with sixel), "kitty" (kitty's graphics protocol with Unicode
placeholders: kitty, Ghostty) or None (the text renderers only).

The environment settles most cases without asking: `GAN_TUI_PIXELS=off|sixel|kitty`
forces a choice, a browser tab (textual-serve) and `TERM=dumb|linux` have none, and
kitty says so in `TERM`. Otherwise the terminal is asked: a kitty graphics query and then
Primary Device Attributes (DA1, `ESC [ c`), which every terminal (and tmux) answers, so
the answer usually comes as fast as the link allows; a sixel terminal lists 4 among its
attributes. A terminal that says nothing is given QUERY_TIMEOUT_S, then the text
renderers it is. Inside tmux only tmux's own answer counts (it passes no kitty images).
"""

from __future__ import annotations

import os
import re
import select
import sys
import termios
import time
import tty
from collections.abc import Mapping
from typing import Any

import numpy as np

ENV = "GAN_TUI_PIXELS"
PROTOCOLS = ("sixel", "kitty")
QUERY_TIMEOUT_S = 0.5  # a DA1 answer over a slow SSH link still fits; then we give up

KITTY_QUERY = b"\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\"
DA1_QUERY = b"\x1b[c"
_DA1_REPLY = re.compile(rb"\x1b\[\?([0-9;]*)c")
_KITTY_OK = b"\x1b_Gi=31;OK"

ASK = "ask"


def from_environment(env: Mapping[str, str]) -> str | None:
    """A protocol, None, or ASK when only the terminal itself can say."""
    choice = env.get(ENV, "auto").strip().lower()
    if choice in ("off", "no", "none", "0", "text"):
        return None
    if choice in PROTOCOLS:
        return choice
    term = env.get("TERM", "")
    if env.get("TERM_PROGRAM") == "textual" or "TEXTUAL_DRIVER" in env:
        return None  # a browser tab: xterm.js in textual-serve draws no images
    if term in ("", "dumb", "linux") or term.startswith("vt1"):
        return None
    in_tmux = "TMUX" in env or term.startswith(("screen", "tmux"))
    if not in_tmux and (term in ("xterm-kitty", "xterm-ghostty") or "KITTY_WINDOW_ID" in env):
        return "kitty"
    return ASK


def parse_reply(reply: bytes, in_tmux: bool = False) -> str | None:
    """What a terminal's answers to KITTY_QUERY + DA1_QUERY say it can draw."""
    match = _DA1_REPLY.search(reply)
    if match and "4" in match.group(1).decode().split(";"):
        return "sixel"
    if _KITTY_OK in reply and not in_tmux:
        return "kitty"
    return None


def query_terminal(fd: int, timeout_s: float = QUERY_TIMEOUT_S) -> bytes:
    """Ask the terminal on `fd` (read and write) and return what it answered, at most
    `timeout_s` later: stops as soon as the DA1 answer has come."""
    saved = termios.tcgetattr(fd)
    reply = b""
    try:
        tty.setcbreak(fd, termios.TCSANOW)  # the answer must not echo or wait for Enter
        os.write(fd, KITTY_QUERY + DA1_QUERY)
        deadline = time.monotonic() + timeout_s
        while not _DA1_REPLY.search(reply):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                break
            chunk = os.read(fd, 1024)
            if not chunk:
                break
            reply += chunk
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
    return reply


def detect(env: Mapping[str, str] | None = None, fd: int | None = None,
           timeout_s: float = QUERY_TIMEOUT_S) -> str | None:
    """The graphics protocol of this process's terminal, or None; never waits longer than
    `timeout_s`. `fd`: the terminal to ask (default: stdin, if both stdin and stdout are
    the same terminal)."""
    env = os.environ if env is None else env
    found = from_environment(env)
    if found != ASK:
        return found
    if fd is None:
        if not (sys.stdin and sys.stdout and sys.stdin.isatty() and sys.stdout.isatty()):
            return None
        fd = sys.stdin.fileno()
    in_tmux = "TMUX" in env or env.get("TERM", "").startswith(("screen", "tmux"))
    try:
        return parse_reply(query_terminal(fd, timeout_s), in_tmux)
    except (OSError, termios.error):
        return None


def prepare(protocol: str | None) -> str | None:
    """Load textual-image for `protocol` before Textual owns the terminal (it asks the
    terminal for its cell size once, on import); None if it cannot be loaded."""
    if protocol is None:
        return None
    try:
        import textual_image.widget  # noqa: F401
    except Exception:  # a broken install: the text renderers still work
        return None
    return protocol


def widget_class(protocol: str) -> type[Any]:
    from textual_image.widget import SixelImage, TGPImage

    return SixelImage if protocol == "sixel" else TGPImage


def grid_image(images: np.ndarray, cols: int = 4, gap: int = 2) -> Any:
    """N x H x W images in [0, 1] as one greyscale PIL image, `cols` to a row."""
    from PIL import Image

    batch = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
    n, h, w = batch.shape
    rows = -(-n // cols)
    canvas = np.zeros((rows * (h + gap) - gap, cols * (w + gap) - gap), dtype=np.uint8)
    for i, image in enumerate(batch):
        y, x = divmod(i, cols)
        canvas[y * (h + gap):y * (h + gap) + h, x * (w + gap):x * (w + gap) + w] = \
            np.round(image * 255).astype(np.uint8)
    return Image.fromarray(canvas, mode="L").convert("RGB")

