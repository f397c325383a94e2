"""``lab``: the live lab in the browser."""

from __future__ import annotations

from pathlib import Path

import click

from ..lab.links import LOOPBACK
from .app import BadInput, main


@main.command("lab")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback lets other machines train on this one.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--runs", "runs_dir", default="runs", show_default=True, help="Folder for sessions kept from the page.")
@click.option("--no-browser", is_flag=True, help="Do not open the page in a browser.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="A reproduce output folder to serve at /report, its lab links pointing at this lab.")
@click.option("--max-memory", default=None,
              help="Memory all sessions together may take (e.g. 4G); default a third of the machine's.")
def lab_cmd(host, port, runs_dir, no_browser, report_dir, max_memory) -> None:
    """Start the lab's web app and open its page: train a network live and watch its layers."""
    from .. import memory

    try:
        limit = memory.parse(max_memory, "--max-memory", least=2**26) if max_memory is not None else None
    except ValueError as err:
        raise BadInput(str(err)) from None
    if report_dir is not None and not (Path(report_dir) / "claims.json").is_file():
        raise BadInput(f"--report {report_dir!r}: no claims.json there (a gradientflow reproduce output folder)")
    try:
        import uvicorn

        from ..lab.server import create_app
        from ..report import served
    except ImportError as err:
        raise BadInput(f"the lab needs its extra: pip install 'gradientflow[lab]' ({err.name} is missing)") from None
    _check_free(host, port)
    if host not in LOOPBACK:
        click.echo(f"warning: --host {host} serves the lab beyond this machine; anyone who reaches it can run "
                   "training here", err=True)
    url = f"http://{'localhost' if host in LOOPBACK else host}:{port}/"
    app = create_app(runs_dir, open_url=None if no_browser else url,  # opened once the server is up
                     hosts=(host,), memory_limit=limit, report=served(report_dir) if report_dir else None)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", ws="websockets-sansio"))
    click.echo(f"gradientflow lab: {url} (Ctrl-C stops it)" + (f"; the report: {url}report" if report_dir else ""))
    server.run()


def _check_free(host: str, port: int) -> None:
    """One line and exit 2 when the address cannot be listened on (uvicorn would log and exit 3)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise BadInput(f"--host {host!r} does not resolve: {err.strerror or err}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as err:
            raise BadInput(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
