"""The lab: its config checked on the server, a session trained off the request path, the WebSocket
protocol, and the page itself in a real browser (Debian's chromium driven by Playwright)."""

import json
import os
import shutil
import socket
import threading
import time

import pytest

from gradientflow.lab.links import link
from gradientflow.lab.server import create_app
from gradientflow.lab.session import LabConfig, Session


def _wait(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(autouse=True, scope="module")
def no_session_outlives_the_tests():
    """A session left training would keep running beside every later test: none may."""
    yield
    assert _wait(lambda: not [t for t in threading.enumerate() if t.name == "gradientflow-lab" and t.is_alive()])


@pytest.mark.parametrize("raw, line", [
    ({"depth": 51}, "invalid depth=51"),
    ({"width": 0}, "invalid width=0"),
    ({"batch_size": 100000}, "invalid batch_size=100000"),
    ({"alpha": -0.1}, "invalid alpha=-0.1"),
    ({"alpha": "fast"}, "invalid alpha='fast'"),
    ({"activation": "rleu"}, "unknown activation; expected one of: sigmoid, tanh"),
    ({"depth": 3, "activations": "tanh,relu"}, "activations lists 2 names for depth 3"),
    ({"depth": 2, "activations": "tanh,rleu"}, "unknown activation 'rleu' in activations"),
    ({"depth_": 2}, "unknown field 'depth_'"),
])
def test_a_bad_control_is_one_line_naming_the_value(raw, line):
    from gradientflow.lab.server import _config

    with pytest.raises(ValueError) as err:
        _config(raw)
    assert line in str(err.value) and "\n" not in str(err.value)


def test_the_critical_and_gain_inits_are_the_theorys_and_the_catalogs():
    from gradientflow import activations, init, properties

    crit = LabConfig(activation="tanh", init="critical", sigma_b2=0.05).train_config()
    assert crit.init == "meanfield" and crit.sigma_w2 == pytest.approx(init.critical("tanh", 0.05).sigma_w2)
    gain = LabConfig(activation="selu", init="gain").train_config()
    assert gain.init == "xavier" and gain.gain == pytest.approx(properties.gain(activations.get("selu")))
    adam = LabConfig(optimizer="adam", alpha=0.01, mu=0.8, rho=0.95, delta=1e-6).train_config()
    assert (adam.lr, adam.momentum, adam.rho, adam.eps) == (0.01, 0.8, 0.95, 1e-6)


def test_a_session_trains_on_its_own_thread_and_a_closed_one_stops(tmp_path):
    session = Session(LabConfig(data="xor", depth=3, width=16, activations="tanh,relu,sigmoid"))
    try:
        assert [type(m).__name__ for m in session.net][1:6:2] == ["Tanh", "ReLU", "Sigmoid"]
        session.one_step()
        assert _wait(lambda: session.step_count == 1)
        session.play()
        assert _wait(lambda: session.step_count > 40)
        frame = session.frame()
        assert frame["curves"] and frame["layers"] and "boundary" in frame
        assert {r["layer"] for r in frame["layers"]} == {"1", "2", "3", "output"}  # numbered, not module indices
        assert all(abs(sum(r["hist"]) - 1) < 1e-2 for r in frame["layers"] if r["hist"])
        assert session.frame()["curves"] == [] or session.playing.is_set()  # only what is new
        session.pause()
        kept = session.keep(tmp_path / "kept")
        from gradientflow.store import Run

        run = Run(kept)
        assert run.status()["steps"] == session.step_count and run.table("probes") is not None
        assert run.config()["lab"]["activations"] == "tanh,relu,sigmoid"
    finally:
        session.close()
    assert not session.thread.is_alive()


def _next(ws, kind):
    """The next message of ``kind``, passing over (and acknowledging) the frames that stream in between."""
    while True:
        message = json.loads(ws.receive_text())
        if message["type"] == "frame":
            ws.send_json({"type": "ack"})
        if message["type"] == kind or message["type"] != "frame":
            return message


def test_the_websocket_answers_setup_frames_and_errors_and_a_closed_socket_ends_the_session():
    from starlette.testclient import TestClient

    app = create_app(hosts=("testserver",))  # the test client's Host
    with TestClient(app) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_json({"type": "play"})
            assert ws.receive_json()["message"] == "send a config first"
            ws.send_json({"type": "config", "config": {"data": "circle", "depth": 2, "width": 8}})
            setup = _next(ws, "setup")
            assert setup["type"] == "setup" and setup["layers"] == 2 and len(setup["theory_std"]) == 2
            ws.send_json({"type": "config", "config": {"depth": 500}})
            assert _next(ws, "error")["errors"] == [{"field": "depth", "message": "invalid depth=500: Input should "
                                                                                  "be less than or equal to 50"}]
            ws.send_json({"type": "play"})
            frames = [_next(ws, "frame") for _ in range(3)]
            assert frames[-1]["type"] == "frame" and frames[-1]["step"] > frames[0]["step"] >= 0
            ws.send_text("not json")
            assert _next(ws, "error")["message"] == "a message is a JSON object with a type"
            threads = [t for t in threading.enumerate() if t.name == "gradientflow-lab"]
            assert len(threads) == 1
        assert _wait(lambda: not any(t.is_alive() for t in threads))  # the tab closed: its training stopped
        from starlette.websockets import WebSocketDisconnect

        with pytest.raises(WebSocketDisconnect):  # another site's page may not drive the lab
            with client.websocket_connect("/ws", headers={"origin": "http://evil.example"}) as ws:
                ws.receive_text()


def test_the_report_links_each_claim_with_a_live_set_up_to_the_lab(tmp_path):
    from urllib.parse import parse_qs, urlparse

    from gradientflow import report

    records = [{"id": cid, "claim": "...", "source": "", "experiment": "x", "verdict": "pass", "numbers": {},
                "threshold": "", "why": "", "figure": None, "config": {}, "command": ""} for cid in ("C6", "C15")]
    html = report.render(tmp_path, records, seed=0, quick=True)
    assert html.count("open in the lab") == 1  # C6 (a timing) has no live set-up
    query = parse_qs(urlparse(link("C15")).query)
    assert {k: v[0] for k, v in query.items()} == {"depth": "10", "width": "64", "activation": "tanh", "init": "normal",
                                                   "std": "0.01"}
    assert link("C15").replace("&", "&amp;") in html
    from gradientflow.lab.links import SETUPS
    from gradientflow.lab.server import _config

    for cid, setup in SETUPS.items():  # every linked set-up passes the server's checks
        _config(setup)


# --- the page in a real browser ---

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runs = tmp_path_factory.mktemp("runs")
    report = tmp_path_factory.mktemp("report")  # a reproduce output's claims, served at /report
    (report / "claims.json").write_text(json.dumps([{"id": "C15", "claim": "small weights collapse", "source": "",
                                                     "experiment": "x", "verdict": "pass", "numbers": {}, "threshold": "",
                                                     "why": "", "figure": None, "config": {}, "command": ""}]))
    from gradientflow.report import served

    config = uvicorn.Config(create_app(runs, report=served(report)), host="127.0.0.1", port=port, log_level="warning",
                            ws="websockets-sansio")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    assert _wait(lambda: srv.started)
    yield f"http://127.0.0.1:{port}", runs
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "the browser tests need Debian's chromium (apt-get install chromium; make test installs it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


def test_the_page_trains_a_collapsing_net_then_a_healthy_one_and_shows_a_bad_value(server, browser, tmp_path):
    url, runs = server
    page = browser.new_page(viewport={"width": 1500, "height": 1200})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # a shared link: C15's tanh net, 10 layers, weights of std 0.01
    page.goto(f"{url}/?data=spiral&depth=10&width=64&activation=tanh&init=normal&std=0.01")
    page.wait_for_function("window.lab.setups === 1")
    assert page.input_value("[name=depth]") == "10" and page.input_value("[name=init]") == "normal"
    assert page.input_value("[name=std]") == "0.01"
    page.click("#play")
    page.wait_for_function("window.lab.step > 100 && state.charts.loss.data[0].length > 5")
    assert page.evaluate("window.lab.layers.length") == 11
    grad = page.evaluate("state.charts.grad.data")
    first, last = grad[1][-1], grad[10][-1]
    assert first is not None and last is not None and first < 1e-3 * last  # the gradient vanishes layer by layer
    page.wait_for_function("document.getElementById('findings').innerText.includes('vanishing')")
    page.wait_for_function("Math.min(...Object.values(state.heat).map(h => h.columns.length)) > 3")  # they move
    if os.environ.get("GF_LAB_SCREENSHOT"):  # a few seconds more for the picture
        page.wait_for_function("Math.min(...Object.values(state.heat).map(h => h.columns.length)) > 25 && lab.fps > 0")
    page.screenshot(path=str(tmp_path / "lab.png"), full_page=True)
    if os.environ.get("GF_LAB_SCREENSHOT"):  # the README's picture: GF_LAB_SCREENSHOT=docs/figures/lab.png
        shutil.copy(tmp_path / "lab.png", os.environ["GF_LAB_SCREENSHOT"])
    # switch to Xavier: a new set-up, in the URL too
    page.select_option("[name=init]", "xavier")
    page.wait_for_function("window.lab.setups === 2")
    assert "init=xavier" in page.url and "std=0.01" in page.url
    page.click("#play")
    page.wait_for_function("window.lab.step > 100 && state.charts.grad && state.charts.grad.data[0].length > 3")
    grad = page.evaluate("state.charts.grad.data")
    assert grad[1][-1] > 1e-2 * grad[10][-1]  # Xavier keeps the gradient of the first layer
    # the report's link for C7: ReLUs at a high rate die
    page.goto(link("C7", f"{url}/"))
    page.wait_for_function("window.lab.setups === 1")
    assert page.input_value("[name=activation]") == "relu" and page.input_value("[name=optimizer]") == "adam"
    page.click("#play")
    page.wait_for_function("state.charts && state.charts.dead && "
                           "Math.max(...state.charts.dead.data.slice(1).map(s => s[s.length - 1] || 0)) > 0.5",
                           timeout=60000)
    # a bad value: the message in the page, the session as it was
    page.fill("[name=depth]", "500")
    page.dispatch_event("[name=depth]", "change")
    page.wait_for_selector("#message:not([hidden])")
    assert "invalid depth=500" in page.inner_text("#message")
    page.click("#keep")
    page.wait_for_function("document.getElementById('kept').textContent.includes('kept as')")
    assert list(runs.iterdir())
    assert not errors
    page.close()


def test_lab_refuses_a_port_in_use_and_a_host_that_does_not_resolve_in_one_line():
    from click.testing import CliRunner

    from gradientflow.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(main, ["lab", "--port", str(port), "--no-browser"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in r.output
    r = CliRunner().invoke(main, ["lab", "--host", "nowhere.invalid", "--no-browser"])
    assert r.exit_code == 2 and "--host 'nowhere.invalid' does not resolve" in r.output


def test_a_diverging_session_stops_at_the_step_and_layer_the_engine_names():
    """The lab trains through the engine's step and guard: an exploding rate ends in a divergence that
    names its step and layer (found by the guard's replay), and the frames stay standard JSON."""
    from gradientflow import jsontext

    session = Session(LabConfig(data="xor", depth=3, width=16, activation="relu", init="he", alpha=100.0))
    try:
        session.play()
        assert _wait(lambda: session.diverged or session.frame()["diverged"], timeout=30)
        frame = session.frame()
        assert frame["diverged"].startswith("non-finite values at step ") and "layer" in frame["diverged"]
        assert frame["diverged"].endswith("(the page's output layer)")  # the guard's module, by the page's number
        step = session.step_count
        assert int(frame["diverged"].split("step ")[1].split(":")[0]) == step + 1  # it stopped before that step
        json.loads(jsontext.dumps(frame))
        assert not session.playing.is_set() and session.step_count == step
    finally:
        session.close()


# --- closed to other sites, and bounded (issue 33) ---

def _client(**kw):
    from starlette.testclient import TestClient

    return TestClient(create_app(hosts=("testserver",), **kw))


def test_only_loopback_names_and_the_hosts_own_reach_the_lab():
    """A DNS-rebinding page reaches the lab under its own name: the Host allowlist refuses it, for the
    page and the WebSocket alike; loopback names and --host's own are served."""
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    with TestClient(create_app()) as client:
        for host in ("localhost:8000", "127.0.0.1:8123", "[::1]:8000"):
            assert client.get("/", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "192.168.1.5"):
            assert client.get("/", headers={"host": host}).status_code == 400, host
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect("/ws", headers={"host": "evil.example:8000", "origin": "http://evil.example:8000"}) as ws:
                ws.receive_text()
    with TestClient(create_app(hosts=("lab.local",))) as client:
        assert client.get("/", headers={"host": "lab.local:8000"}).status_code == 200


def test_the_session_cap_counts_sessions_when_they_are_made(monkeypatch):
    """Sockets opened first and configured later: the cap holds at creation, not at connection."""
    from gradientflow.lab import server

    monkeypatch.setattr(server, "MAX_SESSIONS", 2)
    with _client() as client:
        sockets = [client.websocket_connect("/ws") for _ in range(3)]
        opened = [s.__enter__() for s in sockets]
        try:
            answers = []
            for ws in opened:
                ws.send_json({"type": "config", "config": {"data": "xor", "depth": 1, "width": 4}})
                answers.append(_next(ws, "setup"))
            assert [a["type"] for a in answers] == ["setup", "setup", "error"]
            assert "serving 2 sessions already" in answers[2]["message"]
            assert len(client.app.state.sessions) == 2
        finally:
            for s in sockets:
                s.__exit__(None, None, None)


def test_sessions_share_the_labs_torch_threads_and_the_servers_workers_use_one(monkeypatch):
    """A lone session trains on all the lab's threads; two get half each; a closed tab's share goes
    back. The frames are built on worker threads whose own torch work runs on one thread."""
    import torch

    from gradientflow.lab import server

    threads_in_frames, threads_in_steps = [], []
    frame, step = server.Session.frame, server.Session._train_step

    def counted_frame(self):
        threads_in_frames.append(torch.get_num_threads())
        return frame(self)

    def counted_step(self):
        threads_in_steps.append(torch.get_num_threads())
        return step(self)

    monkeypatch.setattr(server.Session, "frame", counted_frame)
    monkeypatch.setattr(server.Session, "_train_step", counted_step)
    with _client(threads=4) as client:
        config = {"type": "config", "config": {"data": "xor", "depth": 1, "width": 4}}
        with client.websocket_connect("/ws") as first:
            first.send_json(config)
            _next(first, "setup")
            (lone,) = client.app.state.sessions
            assert lone.threads == 4
            with client.websocket_connect("/ws") as second:
                second.send_json(config)
                _next(second, "setup")
                assert sorted(s.threads for s in client.app.state.sessions) == [2, 2]
            assert _wait(lambda: lone.threads == 4)
            first.send_json({"type": "step"})
            assert _wait(lambda: threads_in_steps and threads_in_frames)
    assert set(threads_in_frames) == {1}
    assert threads_in_steps == [4]  # the training thread took its share


def test_a_session_is_refused_before_it_is_built_when_the_memory_bound_would_be_passed():
    from gradientflow.lab.views import session_bytes

    small = {"data": "xor", "depth": 2, "width": 8}
    big = {"data": "mnist1d", "depth": 50, "width": 512, "batch_size": 4096}
    assert session_bytes(LabConfig(**big)) > 1.5 * 2**30  # about 1.8 GiB (the measure)
    limit = int(session_bytes(LabConfig(**small)) * 1.5)
    with _client(memory_limit=limit) as client:
        with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b:
            a.send_json({"type": "config", "config": small})
            assert _next(a, "setup")["type"] == "setup"
            b.send_json({"type": "config", "config": small})  # two would pass the bound
            refused = _next(b, "setup")
            assert refused["type"] == "error" and "close another tab" in refused["message"]
            a.send_json({"type": "config", "config": big})  # a reset to a bigger set-up is checked too
            assert "make it smaller" in _next(a, "setup")["message"]
            assert len(client.app.state.sessions) == 1


def test_two_keeps_in_one_second_get_two_runs_and_keep_works_after_a_divergence(tmp_path):
    with _client(runs=tmp_path) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_json({"type": "config", "config": {"data": "xor", "depth": 3, "width": 16, "activation": "relu",
                                                       "init": "he", "alpha": 100.0}})
            _next(ws, "setup")
            ws.send_json({"type": "keep"})
            ws.send_json({"type": "keep"})
            kept = [_next(ws, "kept")["run"], _next(ws, "kept")["run"]]
            assert len(set(kept)) == 2 and all(os.path.isdir(k) for k in kept)
            ws.send_json({"type": "play"})
            while not (f := _next(ws, "frame"))["diverged"]:
                pass
            assert f["diverged_at"] and f["diverged"].startswith("non-finite")
            ws.send_json({"type": "keep"})
            assert os.path.isdir(_next(ws, "kept")["run"])


def test_a_divergence_not_yet_shown_is_news_until_a_frame_carries_it():
    """The sender sends a frame when the step moves or there is news: a divergence found after the last
    frame (a rollback can bring the step back to that frame's) must still reach the page."""
    session = Session(LabConfig(data="mnist1d", depth=3, width=16, activation="relu", init="he", alpha=100.0))
    try:
        session.play()
        deadline = time.monotonic() + 60
        while not session.diverged and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.diverged and not session.playing.is_set()
        assert session.news()  # no frame has shown it yet
        assert session.frame()["diverged"] and not session.news()
    finally:
        session.close()


def test_bad_messages_get_one_line_and_the_socket_stays_open():
    with _client() as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_bytes(b"\x00\x01")
            assert ws.receive_json()["message"] == "binary messages are not read: send JSON text"
            ws.send_text("[" * 30000 + "]" * 30000)
            assert "nested this deeply" in ws.receive_json()["message"]
            ws.send_text(json.dumps({"type": "config", "config": {"depth": "9" * 10_000_000}}))
            assert "over the 65,536 allowed" in ws.receive_json()["message"]
            ws.send_json({"type": "config", "config": {"depth": "x" * 60_000, "width": -1, "colour": "red"}})
            answer = ws.receive_json()
            assert len(answer["message"]) < 300  # the value named, not echoed whole
            assert {e["field"] for e in answer["errors"]} == {"depth", "width", "colour"}  # every error, each named
            assert "unknown field 'colour'" in [e["message"] for e in answer["errors"]]
            ws.send_json({"type": "config", "config": {"data": "xor", "depth": 1, "width": 4}})
            assert _next(ws, "setup")["type"] == "setup"  # still served


def test_a_tab_that_stops_reading_gets_no_more_frames_and_the_session_stays_bounded(monkeypatch):
    """Frames wait for the page's acknowledgements (at most ``UNACKED_FRAMES`` ahead); the session reads
    its own rows when no frame takes them, so nothing grows while nobody reads."""
    from gradientflow.lab import server, views
    from gradientflow.lab import session as lab_session

    with _client() as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_json({"type": "config", "config": {"data": "xor", "depth": 1, "width": 4, "batch_size": 8}})
            _next(ws, "setup")
            ws.send_json({"type": "play"})
            time.sleep(1.5)
            session = next(iter(client.app.state.sessions))
            ws.send_text("a marker")  # its error line comes after every frame sent so far
            frames = 0
            while json.loads(ws.receive_text())["type"] == "frame":
                frames += 1
            assert session.step_count > 200 and frames == server.UNACKED_FRAMES
            assert len(session.trainer.rows) <= lab_session.READ_EVERY + 8
            assert len(session.fresh.curves) <= views.CURVE_POINTS + 1


def test_pause_and_reset_drop_queued_steps():
    session = Session(LabConfig(data="xor", depth=1, width=4))
    try:
        for _ in range(3000):
            session.one_step()
        session.pause()
        step = session.step_count
        time.sleep(0.3)
        assert session.pending_steps == 0 and session.step_count - step <= 1
        for _ in range(3000):
            session.one_step()
        assert session.pending_steps <= 100
        session.reset()
        time.sleep(0.3)
        assert session.step_count <= 1
    finally:
        session.close()


def test_the_served_report_links_to_this_lab_whatever_its_address(tmp_path):
    """``gradientflow lab --report OUT`` serves the report with links to its own host and port; a
    claims.json from elsewhere that names files outside the folder does not read them."""
    records = [{"id": "C15", "claim": "...", "source": "", "experiment": "x", "verdict": "pass", "numbers": {},
                "threshold": "", "why": "", "figure": "../../../etc/passwd", "config": {}, "command": ""}]
    (tmp_path / "claims.json").write_text(json.dumps(records))
    from gradientflow.report import served

    with _client(report=served(tmp_path)) as client:
        html = client.get("/report").text
        assert 'href="http://testserver/?depth=10' in html and "base64" not in html
    (tmp_path / "claims.json").write_text('{"not": "a list"}')
    with _client(report=served(tmp_path)) as client:
        answer = client.get("/report")
        assert answer.status_code == 400 and "not a reproduce output" in answer.text


def _open(browser, address: str, width: int = 1300, height: int = 1000):
    """A new page at ``address``, once its first set-up has arrived."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(address)
    page.wait_for_function("window.lab && window.lab.setups === 1")
    return page


def test_the_page_shows_a_divergence_as_a_banner_and_keeps_its_curves(server, browser):
    url, _ = server
    page = _open(browser, f"{url}/?data=xor&depth=3&width=16&activation=relu&init=he&alpha=100")
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.click("#play")
    page.wait_for_selector("#banner:not([hidden])", timeout=30000)
    banner = page.inner_text("#banner")
    assert banner.startswith("Diverged at step ") and "layer" in banner
    assert page.evaluate("state.charts.loss.data[0].length") > 0  # the curves up to the divergence stay
    time.sleep(0.5)
    assert page.evaluate("window.lab.frames") > 0 and "diverged" in page.inner_text("#status")
    assert not errors
    page.close()


def test_a_bad_link_names_its_values_and_the_page_still_trains(server, browser):
    url, _ = server
    page = _open(browser, f"{url}/?depth=abc&width=-3&colour=red")  # started from the defaults for the bad values
    message = page.inner_text("#message")
    assert "invalid depth='abc'" in message and "invalid width=-3" in message and "colour" in message
    assert page.evaluate("document.querySelector('[name=depth]').classList.contains('invalid')")
    page.click("#play")
    page.wait_for_function("window.lab.step > 20")
    page.close()


def test_a_changed_set_up_leaves_a_ghost_and_a_lesson_sets_up_its_claim(server, browser):
    url, _ = server
    page = _open(browser, f"{url}/?data=spiral&depth=6&width=32&activation=tanh&init=normal&std=0.01")
    page.click("#play")
    page.wait_for_function("window.lab.step > 100 && state.charts.loss.data[0].length > 5 && state.layerNames")
    page.wait_for_function("window.lab.boundary && window.lab.boundary.test_points.length > 0")
    page.check("#show-test")  # the test points drawn as rings over the boundary
    page.check("#discrete")
    page.wait_for_function("window.lab.diagram && window.lab.diagram.grads[0] !== null")  # the network diagram
    diagram = page.evaluate("window.lab.diagram")
    assert diagram["labels"] == ["input", "1", "2", "3", "4", "5", "6", "output"] and diagram["sizes"][1] == 32
    assert len(diagram["weights"][1]) == 12 and any(w < 0 for w in diagram["weights"][1][0])
    page.check("#diagram-grad")  # edges by the gradient while training
    drawn = page.evaluate("(() => { const c = document.getElementById('diagram');"
                          " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                          " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; })()")
    assert drawn > 2000  # the canvas holds the drawing
    page.select_option("[name=init]", "xavier")
    page.wait_for_function("window.lab.setups === 2")
    assert "set-up changed: press play" in page.inner_text("#hint")
    assert page.evaluate("ghost.loss[0].length") > 5 and "init normal → xavier" in page.inner_text("#ghost-note")
    page.select_option("#lesson", "C15")
    page.wait_for_function("window.lab.setups >= 3")
    time.sleep(0.5)
    assert page.evaluate("window.lab.setups") == 3  # one set-up per lesson (two would race the page's state)
    assert page.input_value("[name=depth]") == "10" and page.input_value("[name=std]") == "0.01"
    assert page.inner_text("#watch").startswith("Watch:")
    page.close()


def test_the_playgrounds_basics_round_trip_and_the_phase_point_drags(server, browser):
    """Feature crosses as checkboxes, batch norm from a link, each unit's map drawn in the diagram, and
    a drag on the phase diagram that starts the net again at the point released (meanfield init)."""
    url, _ = server
    page = _open(browser, f"{url}/?data=xor&depth=2&width=8&batch_norm=true&l2=0.001&train_share=0.5")
    assert page.is_checked("[name=batch_norm]") and page.evaluate("state.setup.config.batch_norm") is True
    assert page.evaluate("state.setup.data").startswith("xor/standardize: 500 train / 500 test")
    page.check("[data-feature='x1x2']")
    page.wait_for_function("window.lab.setups === 2")
    assert page.evaluate("state.setup.config.features") == "x1,x2,x1x2" and "features=x1%2Cx2%2Cx1x2" in page.url
    page.click("#play")
    page.wait_for_function("window.lab.boundary && window.lab.boundary.neurons && window.lab.diagram")
    assert [len(c) for c in page.evaluate("window.lab.boundary.neurons.maps")] == [3, 8, 8]
    coloured = page.evaluate("(() => { const c = document.getElementById('diagram');"  # the maps' blue and orange
                             " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
                             " for (let i = 0; i < d.length; i += 4) n += d[i + 3] > 0 && Math.abs(d[i] - d[i + 2]) > 60;"
                             " return n; })()")
    assert coloured > 300
    page.uncheck("[name=batch_norm]")
    page.wait_for_function("window.lab.setups === 3")
    assert page.evaluate("state.setup.point") is None and page.evaluate("state.setup.theory_note") == "feature crosses"
    page.uncheck("[data-feature='x1x2']")
    page.wait_for_function("window.lab.setups === 4")
    box = page.locator("#phase").bounding_box()
    # the canvas maps sigma_w2 in [0, 4] onto x in [30, 312] and sigma_b2 in [0, 0.5] onto y in [190, 8]
    x, y = box["x"] + (30 + 282 * 3 / 4) * box["width"] / 320, box["y"] + (190 - 182 * 0.2 / 0.5) * box["height"] / 220
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.mouse.down()
    page.mouse.move(x, y, steps=5)
    page.mouse.up()
    page.wait_for_function("window.lab.setups === 5")
    cfg = page.evaluate("state.setup.config")
    assert cfg["init"] == "meanfield" and cfg["sigma_w2"] == pytest.approx(3, abs=0.03) \
        and cfg["sigma_b2"] == pytest.approx(0.2, abs=0.01)
    assert page.evaluate("state.setup.point.phase") == "chaotic"
    page.close()


def test_a_regression_set_draws_the_nets_output_as_a_value_map_and_charts_the_test_r2(server, browser):
    url, _ = server
    page = _open(browser, f"{url}/?data=reg-plane&depth=2&width=16&optimizer=adam&alpha=0.01")
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    assert "R²" in page.inner_text("#accuracy-title") and "squared error" in page.inner_text("#loss-title")
    assert page.evaluate("state.charts.accuracy.plot.series.map(s => s.label)")[1:] == ["test R²"]
    page.click("#play")
    page.wait_for_function("window.lab.boundary && window.lab.boundary.task === 'regression' && "
                           "state.charts.accuracy.data[0].length >= 2", timeout=30000)
    assert page.evaluate("state.charts.accuracy.data[1]")[-1] > 0.5
    assert page.inner_text("#boundary-title") == "the net's output over the plane"
    assert page.is_visible("#boundary-key") and "output −" in page.inner_text("#boundary-key")
    shades = page.evaluate("""(() => {  // distinct colours, blue (+) and orange (-) pixels of the map
        const c = document.getElementById('boundary');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set(); let blue = 0, orange = 0;
        for (let i = 0; i < d.length; i += 4) {
          seen.add(d[i] + ',' + d[i + 2]); blue += d[i + 2] - d[i] > 60; orange += d[i] - d[i + 2] > 60;
        }
        return [seen.size, blue, orange]; })()""")
    assert shades[0] > 40 and shades[1] > 1000 and shades[2] > 1000, shades  # a ramp, not a few classes' colours
    page.select_option("[name=data]", "xor")  # back to classes: accuracy, a boundary, no colour bar
    page.wait_for_function("window.lab.setups === 2")
    assert page.inner_text("#accuracy-title") == "accuracy" and not page.is_visible("#boundary-key")
    assert not errors
    page.close()


def test_the_served_reports_link_opens_the_lab_on_its_own_port(server, browser):
    url, _ = server
    assert not url.endswith(":8000")
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.goto(f"{url}/report")
    with page.expect_navigation():
        page.click("text=open in the lab")
    page.wait_for_function("window.lab && window.lab.setups === 1")
    assert page.url.startswith(url) and page.input_value("[name=depth]") == "10"
    page.close()


def test_the_page_fits_a_phone_screen(server, browser):
    url, _ = server
    page = _open(browser, f"{url}/?data=spiral&depth=4", width=390, height=844)
    page.click("#play")
    page.wait_for_function("window.lab.step > 20 && state.layerNames")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    if os.environ.get("GF_LAB_PHONE_SCREENSHOT"):  # the guide's picture: GF_LAB_PHONE_SCREENSHOT=docs/figures/lab_phone.png
        page.wait_for_function("window.lab.step > 300")
        page.screenshot(path=os.environ["GF_LAB_PHONE_SCREENSHOT"])
    page.close()


def test_findings_in_the_page_keep_their_since_name_layers_by_number_and_skip_advice_in_use():
    from gradientflow.lab.views import for_page

    since: dict = {}
    labels = {"0": "1", "2": "2", "4": "output"}
    dead = {"kind": "dead", "layers": ["2"], "message": "layer 2: 60% dead units since step 77",
            "recommendation": "dead ReLUs (C7): lower the learning rate, use He init, or Leaky ReLU",
            "numbers": {"since_step": 77}}
    assert for_page([dead], labels, since, "xavier")[0]["message"] == "layer 2: 60% dead units since step 77"
    later = {**dead, "message": "layer 2: 60% dead units since step 10815", "numbers": {"since_step": 10815}}
    shown = for_page([later], labels, since, "he")[0]
    assert shown["message"].endswith("since step 77") and "He init" not in shown["recommendation"]
    assert for_page([], labels, since, "he") == [] and since == {}  # it stopped holding: forgotten
    out = {**dead, "layers": ["4"], "message": "layer 4: 60% dead units since step 5", "numbers": {"since_step": 5}}
    assert for_page([out], labels, since, "he")[0]["message"].startswith("the output layer:")
    many = [{**dead, "layers": [n], "message": f"layer {n}: 60% dead units since step 5"} for n in ("0", "2")]
    grouped = for_page(many, labels, {}, "xavier")
    assert len(grouped) == 1 and grouped[0]["layers"] == ["1", "2"] and "the same in 1 more: layers 2" in grouped[0]["message"]
    span = {"kind": "vanishing", "layers": ["0", "2"], "numbers": {}, "recommendation": "",
            "message": "layers 0–2: gradient 7.3e-12 of layer 4's; layers 0, 2 too; layer 40 is not drawn"}
    assert for_page([span], labels, {}, "xavier")[0]["message"] == \
        "layers 1–2: gradient 7.3e-12 of the output layer's; layers 1, 2 too; layer 40 is not drawn"


def test_a_keep_that_cannot_be_written_is_one_error_line_and_the_session_goes_on(tmp_path):
    (tmp_path / "runs").write_text("a file where the runs folder should be")
    with _client(runs=tmp_path / "runs") as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_json({"type": "config", "config": {"data": "xor", "depth": 1, "width": 4}})
            _next(ws, "setup")
            ws.send_json({"type": "keep"})
            assert _next(ws, "error")["message"].startswith("keep failed: ")
            ws.send_json({"type": "reset"})
            assert _next(ws, "setup")["type"] == "setup"
