"""vaelab serve: the latent-space explorer in the browser (FastAPI + uvicorn, local only by default)."""
from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Optional

import typer

from . import app
from .common import friendly

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_port(host: str, port: int) -> None:
    """A ValueError naming the port when another process holds it (probed by binding as uvicorn does, with
    SO_REUSEADDR, then closing); any other bind problem is left for the server to report."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        return
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ValueError(f"port {port} on {host} is in use (another server holds it): pick another "
                                 "with --port") from None


@app.command()
@friendly
def serve(
    run: Path = typer.Argument(..., help="run folder (config.json + model.safetensors)"),
    host: str = typer.Option("127.0.0.1", help="address to bind; anything but 127.0.0.1/localhost exposes the run"),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port"),
    data_dir: Optional[Path] = typer.Option(None, help="where mnist/ lives (else $VAELAB_DATA_DIR)"),
    data: Optional[Path] = typer.Option(None, "--data", help="use this dataset (a built-in name or a path) "
                                        "instead of the one recorded in config.json"),
    max_points: int = typer.Option(5000, min=2, max=100000, help="test images shown on the map"),
    threads: int = typer.Option(1, min=1, help="torch CPU threads (1 is fastest for one-image decodes)"),
) -> None:
    """Explore a trained run: latent map, live decoding, interpolation, prior samples, metrics."""
    try:
        import uvicorn

        from ..web import create_app
    except ImportError as e:
        raise RuntimeError(f"vaelab serve needs the web extra ({e.name} is missing): "
                           "pip install 'vaelab[web]'") from None
    import torch

    check_port(host, port)  # first: a busy port is said before the model loads or a URL is printed
    torch.set_num_threads(threads)  # more threads only add synchronisation to tiny single-row matmuls
    extra_hosts = [] if host in LOOPBACK else [host]
    web_app = create_app(run, data_dir=data_dir, max_points=max_points, data=data, allowed_hosts=extra_hosts)
    if host not in LOOPBACK:
        typer.echo(f"warning: binding {host}: anyone who can reach this address can use the explorer", err=True)
    typer.echo(f"vaelab explorer for {run}: http://{host}:{port}/  (Ctrl+C to stop)")
    # no proxy headers: the client address is the socket's, never a header a page could set
    uvicorn.run(web_app, host=host, port=port, log_level="warning", proxy_headers=False)
