"""`gan-tui serve [RUN|latest]`: the attach dashboard in web browsers, with textual-serve.

textual-serve starts its command once per browser tab (over a websocket, with Textual's
web driver), so each tab is a `gan-tui attach RUN` viewer of its own: closing the tab
or pressing q detaches it, and stopping `serve` only ends viewers. The run trains on.

Only its owner gets in. The page and every request after it (scripts, the websocket)
need a random token printed at start: `?token=...` on the first request, then an
HttpOnly, SameSite=Strict cookie. A request without it gets 403, and so does a
websocket opened from another origin. This holds on loopback too, where any local user
(and any web page, through DNS rebinding) can reach a TCP port, while the run's own
control socket admits only its owner. Binding to anything but loopback also needs
`--public`.
"""

from __future__ import annotations

import argparse
import getpass
import hmac
import ipaddress
import secrets
import shlex
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gan_tui.errors import GanTuiError, UsageError
from gan_tui.runs import add_run_arguments, require_running, resolve_run

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
FORBIDDEN = ("403: this page needs the token that `gan-tui serve` printed when it started "
             "(open the URL it printed, with its ?token=...)\n")


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach: localhost, 127.0.0.0/8, ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, port: int, public: bool) -> None:
    """Refuse (exit 2) a bind the user did not clearly ask for."""
    if not 0 < port < 65536:
        raise UsageError(f"--port must be 1-65535, got {port}")
    if not is_loopback(host) and not public:
        raise UsageError(f"--host {host} is reachable from other machines; add --public to "
                         "serve there (the page still needs the printed token), or keep the "
                         f"default {DEFAULT_HOST} and use an SSH tunnel")


def attach_command(run_dir: Path) -> str:
    """The shell command textual-serve runs for each browser tab."""
    return shlex.join([sys.executable, "-m", "gan_tui", "attach", str(run_dir)])


def cookie_name(port: int) -> str:
    return f"gan_tui_token_{port}"  # cookies ignore ports: one per server


Handler = Callable[[Any], Awaitable[Any]]


def token_guard(token: str, port: int) -> Any:
    """aiohttp middleware: 403 unless the request carries the token (query or cookie)
    and, if it says where it comes from (Origin, as browsers do for websockets and
    scripts), comes from this server's own page."""
    from aiohttp import web

    expected = token.encode()
    name = cookie_name(port)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.query.get("token") or request.cookies.get(name) or ""
        origin = request.headers.get("Origin")
        if (not hmac.compare_digest(given.encode(), expected)
                or (origin is not None and urlsplit(origin).netloc != request.host)):
            return web.Response(status=403, text=FORBIDDEN)
        response = await handler(request)
        if "token" in request.query and not response.prepared:  # the first visit
            response.set_cookie(name, token, httponly=True, samesite="Strict", path="/")
            response.headers["Referrer-Policy"] = "no-referrer"
        return response

    return guard


def make_server(run_dir: Path, host: str, port: int, token: str, lines: list[str]) -> Any:
    """A textual-serve Server for `gan-tui attach run_dir`, guarded by `token`; `lines`
    are printed once it starts."""
    from aiohttp import web
    from textual_serve.server import Server

    class DashboardServer(Server):
        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(token_guard(token, port))
            return app

        async def handle_index(self, request: web.Request) -> Any:
            # The page's script and websocket URLs as the browser reached us (an SSH
            # tunnel may use another local port); no await before the parent uses it.
            self.public_url = f"{request.scheme}://{request.host}"
            return await super().handle_index(request)

        async def on_startup(self, app: web.Application) -> None:
            for line in lines:
                print(line, flush=True)

        def initialize_logging(self) -> None:
            pass  # textual-serve's rich log of each tab would bury the URL

    return DashboardServer(attach_command(run_dir), host=host, port=port,
                           title=f"gan-tui · {run_dir.name}")


def startup_lines(run_dir: Path, host: str, port: int, token: str) -> list[str]:
    shown_host = f"[{host}]" if ":" in host else host
    if is_loopback(host):
        url = f"http://{shown_host}:{port}/?token={token}"
        where = (f"From another machine: ssh -L {port}:{shown_host}:{port} "
                 f"{getpass.getuser()}@{socket.gethostname()}  then open the same URL there")
    else:
        name = socket.gethostname() if host in ("0.0.0.0", "::") else shown_host
        url = f"http://{name}:{port}/?token={token}"
        where = "Public: anyone with this URL (token included) can steer the run"
    return [f"Serving the dashboard of {run_dir} to web browsers (each tab is a viewer)",
            f"Open: {url}", where,
            "Ctrl+C stops serving; the run trains on (q in a tab detaches that tab)"]


def cmd_serve(args: argparse.Namespace) -> int:
    check_bind(args.host, args.port, args.public)
    run_dir = resolve_run(args.run, Path(args.runs_root)).absolute()
    require_running(run_dir)
    token = secrets.token_urlsafe(24)
    server = make_server(run_dir, args.host, args.port, token,
                         startup_lines(run_dir, args.host, args.port, token))
    try:
        server.serve()
    except OSError as exc:
        raise GanTuiError(f"cannot listen on {args.host}:{args.port}: "
                          f"{exc.strerror or exc}") from None
    print("Stopped serving; the run trains on", flush=True)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="show a run's dashboard in web browsers (textual-serve)",
        description="Serve the attach dashboard to web browsers: each tab is a viewer of "
        "the run (every key works; q detaches the tab). Listens on loopback by default; "
        "reach it from a laptop through an SSH tunnel (the line to type is printed). "
        "Every page needs the random token printed at start. Stopping serve never stops "
        "training.")
    add_run_arguments(serve)
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help=f"TCP port (default {DEFAULT_PORT})")
    serve.add_argument("--public", action="store_true",
                       help="allow a --host other machines can reach (the token is still "
                       "required)")
    serve.set_defaults(func=cmd_serve)
