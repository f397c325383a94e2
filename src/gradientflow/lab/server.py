"""The lab's web app: a Starlette application served by uvicorn.

``GET /`` is the page (``static/index.html``; the page's files ship inside the package, no build
step). ``/ws`` is one WebSocket per browser tab, and one ``Session`` per WebSocket: the tab sends
``{"type": "config", "config": {...}}``, ``play``, ``pause``, ``step``, ``reset`` and ``keep``;
the server answers with a ``setup`` message (the theory's side of the set-up) and then frames,
``FPS`` a second at most, built off the training thread. A bad value is answered with
``{"type": "error", "message": one line}`` and the session goes on as it was. A closed tab
stops its session's training. Sessions are independent; ``MAX_SESSIONS`` bound them. A WebSocket
opened by a page of another origin is refused (another site open in the same browser cannot
drive the lab).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import jsontext
from ..config import describe_error
from .session import LabConfig, Session

STATIC = Path(__file__).parent / "static"
FPS = 15
MAX_SESSIONS = 16


def create_app(runs: str | Path = "runs", open_url: str | None = None) -> Starlette:
    """The app; sessions kept from the page go to ``runs/lab-<time>``; ``open_url`` is opened in the
    user's browser once the server has started."""
    sessions: set[Session] = set()
    warnings.filterwarnings("ignore", message="probe history over keep_windows")  # a session thins by design

    async def index(request):
        return FileResponse(STATIC / "index.html")

    async def options(request):
        from .session import ACTIVATIONS, DATASETS, INITS, OPTIMIZERS

        from ..data import NORMALIZATIONS
        from ..schedules import SCHEDULES

        return JSONResponse({"data": DATASETS, "activation": ACTIVATIONS, "init": INITS, "optimizer": OPTIMIZERS,
                             "schedule": SCHEDULES, "normalize": NORMALIZATIONS,
                             "defaults": LabConfig().model_dump()})

    async def socket(ws: WebSocket):
        origin = ws.headers.get("origin")
        if origin and urlparse(origin).netloc != ws.headers.get("host"):  # another site's page in the user's browser
            await ws.close(code=1008)
            return
        await ws.accept()
        if len(sessions) >= MAX_SESSIONS:
            await ws.send_json({"type": "error", "message": f"the lab is serving {MAX_SESSIONS} tabs already; "
                                                            "close one and reload"})
            await ws.close()
            return
        session: Session | None = None
        sender = None
        try:
            while True:
                try:
                    message = json.loads(await ws.receive_text())
                except ValueError:
                    await ws.send_json({"type": "error", "message": "a message is a JSON object with a type"})
                    continue
                kind = message.get("type") if isinstance(message, dict) else None
                if kind == "config":
                    try:
                        cfg = _config(message.get("config"))
                        if session is None:
                            session = await asyncio.to_thread(Session, cfg)
                            sessions.add(session)
                            sender = asyncio.create_task(_send_frames(ws, session))
                        else:
                            await asyncio.to_thread(session.reset, cfg)
                        await ws.send_text(jsontext.dumps({"type": "setup", **session.static}))
                    except ValueError as err:
                        await ws.send_json({"type": "error", "message": str(err)})
                elif session is None:
                    await ws.send_json({"type": "error", "message": "send a config first"})
                elif kind == "play":
                    session.play()
                elif kind == "pause":
                    session.pause()
                elif kind == "step":
                    session.one_step()
                elif kind == "reset":
                    await asyncio.to_thread(session.reset)
                    await ws.send_text(jsontext.dumps({"type": "setup", **session.static}))
                elif kind == "keep":
                    folder = Path(runs) / f"lab-{time.strftime('%Y%m%d-%H%M%S')}-{id(session) % 10000:04d}"
                    Path(runs).mkdir(parents=True, exist_ok=True)
                    path = await asyncio.to_thread(session.keep, folder)
                    await ws.send_json({"type": "kept", "run": path})
                else:
                    await ws.send_json({"type": "error", "message": f"unknown message type {kind!r}; expected "
                                                                    "config, play, pause, step, reset or keep"})
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if sender is not None:
                sender.cancel()
            if session is not None:  # a closed tab stops its training
                sessions.discard(session)
                session.request_stop()  # at once: the await below may not run when the server is shutting down
                await asyncio.to_thread(session.close)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if open_url is not None:
            import webbrowser

            asyncio.get_running_loop().run_in_executor(None, webbrowser.open, open_url)
        yield

    return Starlette(routes=[Route("/", index), Route("/options", options), WebSocketRoute("/ws", socket),
                             Mount("/static", StaticFiles(directory=STATIC), name="static")], lifespan=lifespan)


def _config(raw) -> LabConfig:
    """The page's controls, validated: ValueError with one line naming the value and what is allowed."""
    if not isinstance(raw, dict):
        raise ValueError("config must be an object of control: value")
    try:
        cfg = LabConfig(**raw)
        cfg.train_config()  # the engine's own checks (optimiser arguments, sizes, the critical point)
        return cfg
    except ValidationError as err:
        raise ValueError(describe_error(err)) from None


async def _send_frames(ws: WebSocket, session: Session) -> None:
    """A frame every 1/FPS s while anything moves; the frame is built on a worker thread."""
    last_step = -1
    while True:
        started = time.monotonic()
        if session.step_count != last_step or session.error:
            frame = await asyncio.to_thread(session.frame)
            last_step = frame["step"]
            await ws.send_text(jsontext.dumps(frame))  # standard JSON: NaN would stop the page's parse
        await asyncio.sleep(max(0.0, 1 / FPS - (time.monotonic() - started)))
