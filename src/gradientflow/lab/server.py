"""The lab's web app: a Starlette application served by uvicorn.

``GET /`` is the page (``static/index.html``; the page's files ship inside the package, no build
step); ``GET /report`` is a ``reproduce`` report, its lab links pointing at this server whatever its
host and port. ``/ws`` is one WebSocket per browser tab, and one ``Session`` per WebSocket: the tab
sends ``{"type": "config", "config": {...}}``, ``play``, ``pause``, ``step``, ``reset``, ``keep`` and
``ack`` (one per frame drawn); the server answers with a ``setup`` message (the theory's side of the
set-up) and then frames, ``FPS`` a second at most and never more than ``UNACKED_FRAMES`` ahead of
the page, built off the training thread. A bad value is answered with ``{"type": "error", "message":
one line, "errors": [{"field", "message"}, ...]}`` and the session goes on as it was.

Closed to other sites and bounded: requests whose Host is not a loopback name or ``--host``'s own
are refused (a DNS-rebinding page cannot reach the lab), and so is a WebSocket opened by a page of
another origin; at most ``MAX_SESSIONS`` sessions, counted when they are created, whose estimated
memory together stays under ``memory_limit``; a message is JSON text of at most ``MAX_MESSAGE``
characters, and anything else gets one error line with the socket kept open.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import jsontext, memory
from ..config import describe_errors, echo
from .links import LOOPBACK
from .session import LabConfig, Session
from .views import session_bytes

STATIC = Path(__file__).parent / "static"
FPS = 15
MAX_SESSIONS = 16
UNACKED_FRAMES = 2  # frames sent and not yet drawn by the page: a tab that stops reading stops the frames
MAX_MESSAGE = 65536  # characters of one message from the page


def create_app(runs: str | Path = "runs", open_url: str | None = None, *, hosts: tuple[str, ...] = (),
               memory_limit: int | None = None, report: Callable[[str], str] | None = None,
               threads: int | None = None) -> Starlette:
    """The app; sessions kept from the page go to ``runs/lab-<time>-<n>``; ``open_url`` is opened in
    the user's browser once the server has started. ``hosts``: names the server answers to besides
    loopback (``--host``'s). ``memory_limit``: bytes all sessions together may take (estimated before
    each is built; default a third of the machine's memory). ``report``: the HTML of a ``reproduce``
    report given the lab's own address (``report.served``), served at ``/report``. ``threads``: the torch
    threads the sessions share, each training on its share (default: the process's, as the app is made)."""
    sessions: dict[Session, int] = {}  # each session and its estimated bytes
    cores = threads or torch.get_num_threads()
    reserved: list[int] = []  # sessions being built (a thread is drawing their data and weights)
    limit = memory_limit if memory_limit is not None else memory.machine() // 3
    kept_names = itertools.count(1)
    warnings.filterwarnings("ignore", message="probe history over keep_windows")  # a session thins by design

    async def index(request):
        return FileResponse(STATIC / "index.html")

    async def options(request):
        from .. import catalog
        from .features import FEATURES
        from .lessons import LESSONS
        from .session import ACTIVATIONS, DATASETS, INITS, OPTIMIZERS

        return JSONResponse({"data": DATASETS, "activation": ACTIVATIONS, "init": INITS, "optimizer": OPTIMIZERS,
                             "schedule": catalog.names("schedule"), "normalize": catalog.names("normalize"),
                             "features": list(FEATURES), "defaults": LabConfig().model_dump(), "lessons": LESSONS})

    async def report_page(request):
        if report is None:
            return HTMLResponse("<p>no report: start the lab with --report FOLDER (a reproduce output)</p>", 404)
        try:
            html = await asyncio.to_thread(report, str(request.base_url))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:  # a claims.json from elsewhere
            return HTMLResponse(f"<p>the report's claims.json is not a reproduce output ({type(err).__name__})</p>", 400)
        return HTMLResponse(html)

    def admit(cfg: LabConfig, own: int = 0) -> int:
        """The set-up's estimated bytes; ValueError when the sessions together would pass the limit."""
        need = session_bytes(cfg)
        used = sum(sessions.values()) + sum(reserved) - own
        if used + need > limit:
            raise ValueError(f"this set-up needs about {memory.readable(need)}; the lab's sessions use "
                             f"{memory.readable(used)} of the {memory.readable(limit)} it allows: make it smaller "
                             "or close another tab")
        return need

    def share_cores() -> None:
        for each in sessions:
            each.threads = max(1, cores // len(sessions))

    async def socket(ws: WebSocket):
        origin = ws.headers.get("origin")
        if origin and urlparse(origin).netloc != ws.headers.get("host"):  # another site's page in the user's browser
            await ws.close(code=1008)
            return
        await ws.accept()
        session: Session | None = None
        sender = None
        acks = _Credits(UNACKED_FRAMES)

        async def error(message: str, errors: list[dict] | None = None) -> None:
            await ws.send_text(jsontext.dumps({"type": "error", "message": message,
                                               "errors": errors or [{"field": None, "message": message}]}))

        try:
            while True:
                raw = await ws.receive()
                if raw["type"] == "websocket.disconnect":
                    break
                message = _message(raw)
                if isinstance(message, str):
                    await error(message)
                    continue
                kind = message.get("type")
                if kind == "ack":
                    acks.give()
                elif kind == "config":
                    try:
                        cfg = _config(message.get("config"))
                        if session is None:
                            if len(sessions) + len(reserved) >= MAX_SESSIONS:
                                raise ValueError(f"the lab is serving {MAX_SESSIONS} sessions already; close a tab "
                                                 "and try again")
                            need = admit(cfg)
                            reserved.append(need)
                            try:
                                session = await _off_loop(Session, cfg)  # its share of the threads: below, before it plays
                            finally:
                                reserved.remove(need)
                            sessions[session] = need
                            share_cores()
                            sender = asyncio.create_task(_send_frames(ws, session, acks))
                        else:
                            need = admit(cfg, own=sessions[session])
                            await _off_loop(session.reset, cfg)
                            sessions[session] = need
                        await ws.send_text(jsontext.dumps({"type": "setup", **session.static}))
                    except _Invalid as err:
                        await error(err.errors[0]["message"], err.errors)
                    except ValueError as err:
                        await error(str(err))
                elif kind not in ("play", "pause", "step", "reset", "keep"):
                    await error(f"unknown message type {echo(kind)}; expected config, play, pause, step, reset, "
                                "keep or ack")
                elif session is None:
                    await error("send a config first")
                elif kind == "play":
                    session.play()
                elif kind == "pause":
                    session.pause()
                elif kind == "step":
                    session.one_step()
                elif kind == "reset":
                    await _off_loop(session.reset)
                    await ws.send_text(jsontext.dumps({"type": "setup", **session.static}))
                elif kind == "keep":
                    try:
                        Path(runs).mkdir(parents=True, exist_ok=True)
                        folder = Path(runs) / f"lab-{time.strftime('%Y%m%d-%H%M%S')}-{next(kept_names)}"
                        while folder.exists():  # a run kept by an earlier server in the same second
                            folder = folder.with_name(f"{folder.name}-{next(kept_names)}")
                        path = await _off_loop(session.keep, folder)
                        await ws.send_text(jsontext.dumps({"type": "kept", "run": path}))
                    except (OSError, ValueError) as err:  # a full disk, a folder refused: said, the session goes on
                        await error(f"keep failed: {err}")
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if sender is not None:
                sender.cancel()
            if session is not None:  # a closed tab stops its training
                sessions.pop(session, None)
                share_cores()
                session.request_stop()  # at once: the await below may not run when the server is shutting down
                await asyncio.to_thread(session.close)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if open_url is not None:
            import webbrowser

            asyncio.get_running_loop().run_in_executor(None, webbrowser.open, open_url)
        yield

    allowed = [f"[{h}]" if ":" in h else h for h in (*LOOPBACK, *_names(hosts))]  # as a Host header writes them
    app = Starlette(routes=[Route("/", index), Route("/options", options), Route("/report", report_page),
                            WebSocketRoute("/ws", socket), Mount("/static", StaticFiles(directory=STATIC), name="static")],
                    middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed, www_redirect=False)],
                    lifespan=lifespan)
    app.state.sessions = sessions
    return app


def _names(hosts: tuple[str, ...]) -> set[str]:
    """The names a page may use for ``hosts``; listening on every interface (0.0.0.0, ::) means this
    machine's own name and addresses."""
    import socket

    names = {h for h in hosts if h not in ("0.0.0.0", "::")}
    if len(names) < len(hosts):
        names |= {socket.gethostname(), socket.getfqdn()}
        with contextlib.suppress(OSError):
            names |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    return names


class _Credits:
    """Frames the server may send before the page acknowledges one: at most ``most`` in flight."""

    def __init__(self, most: int):
        self.most, self.free, self.freed = most, most, asyncio.Event()

    async def take(self) -> None:
        while self.free == 0:
            self.freed.clear()
            await self.freed.wait()
        self.free -= 1

    def give(self) -> None:
        self.free = min(self.most, self.free + 1)  # an ack too many (a stale page) changes nothing
        self.freed.set()


class _Invalid(ValueError):
    """A config with one or more bad values, each named."""

    def __init__(self, errors: list[dict]):
        super().__init__(errors[0]["message"])
        self.errors = errors


def _message(raw: dict) -> dict | str:
    """The page's message as a dict with a type, or the one line that says why it is not one."""
    text = raw.get("text")
    if text is None:
        return "binary messages are not read: send JSON text"
    if len(text) > MAX_MESSAGE:
        return f"a message of {len(text):,} characters is over the {MAX_MESSAGE:,} allowed"
    try:
        message = json.loads(text)
    except RecursionError:
        return "a message nested this deeply is not read: send a flat JSON object with a type"
    except ValueError:
        return "a message is a JSON object with a type"
    if not isinstance(message, dict):
        return "a message is a JSON object with a type"
    return message


def _config(raw) -> LabConfig:
    """The page's controls, validated: ``_Invalid`` (a ValueError) naming every bad value and what is allowed."""
    if not isinstance(raw, dict):
        raise ValueError("config must be an object of control: value")
    try:
        cfg = LabConfig(**raw)
    except ValidationError as err:
        raise _Invalid(describe_errors(err)) from None
    try:
        cfg.train_config()  # the engine's own checks (optimiser arguments, sizes, the critical point)
    except ValidationError as err:
        raise _Invalid(describe_errors(err)) from None
    return cfg


async def _off_loop(fn: Callable, *args):
    """``fn(*args)`` on a worker thread whose own torch work runs on one thread. A thread that ran
    torch on two keeps an OpenMP worker for good, and where there are more OpenMP threads than cores
    GNU OpenMP stops spinning between parallel regions: a session's training thread then has its
    worker put to sleep and woken at every one (a 50 x 500 session on two threads left the 2-core
    machine 30 % idle, against 2-8 % with this)."""
    def one_thread():
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)
        return fn(*args)

    return await asyncio.to_thread(one_thread)


async def _send_frames(ws: WebSocket, session: Session, acks: _Credits) -> None:
    """A frame every 1/FPS s while anything moves, once the page has drawn all but ``UNACKED_FRAMES - 1``
    of those sent; the frame is built on a worker thread."""
    last_step = -1
    while True:
        started = time.monotonic()
        if session.step_count != last_step or session.error or session.news():
            await acks.take()
            frame = await _off_loop(session.frame)
            last_step = frame["step"]
            await ws.send_text(jsontext.dumps(frame))  # standard JSON: NaN would stop the page's parse
        await asyncio.sleep(max(0.0, 1 / FPS - (time.monotonic() - started)))
