"""``hetmoe serve``: the retrieval-plus-rerank HTTP service (FastAPI + uvicorn) over a fitted model."""
from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from pathlib import Path

import typer

from hetmoe.commands.options import MODEL, MODEL_DATA, MODEL_STORE, example
from hetmoe.errors import HetmoeError

logger = logging.getLogger(__name__)

WORKER_HEALTHCHECK_S = 120


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses: only then may the service run without an API key."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> None:
    """Refuse an address another process already listens on (uvicorn would say so only after the model loaded)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise HetmoeError(f"--host {host}: cannot be resolved ({err.strerror}); pass an address such as "
                          "127.0.0.1") from err
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise HetmoeError(f"port {port} on {host} is already in use; stop the process listening there or pass "
                                  "--port with a free port") from err
            raise HetmoeError(f"cannot listen on {host}:{port} ({err.strerror}); pass another --host or "
                              "--port") from err


def register(app: typer.Typer) -> None:
    @app.command("serve", epilog=example(
        "hetmoe serve --model stores/demo/model",
        "hetmoe serve --model /srv/m/model --store /srv/m/stores --host 0.0.0.0 --api-key $KEY --http-workers 4"))
    def serve(
        model: Path = MODEL,
        store: Path = MODEL_STORE,
        data: Path = MODEL_DATA,
        host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback needs an API key."),
        port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
        http_workers: int = typer.Option(1, "--http-workers", min=1, max=64, help="HTTP worker processes; each loads "
                                         "its own copy of the model."),
        api_key: str = typer.Option(None, "--api-key", envvar="HETMOE_API_KEY", show_envvar=True,
                                    help="Require this key in the X-API-Key header (all endpoints but /healthz)."),
        warm: bool = typer.Option(False, "--warm/--lazy", help="Load every expert's encoder before serving (default: on first use)."),
    ) -> None:
        """Serve POST /score, POST /search, GET /healthz, GET /metrics and the OpenAPI docs (/docs, /openapi.json)
        for MODEL.

        Binding a non-loopback host without an API key is refused: the service would be open to the network. Without
        FAISS indexes ('hetmoe index') /score works and /search answers 503. A model copied to another machine with
        its stores is served from there: it records them relative to its own folder (or pass --store / --data).
        """
        import uvicorn

        from hetmoe.online.encoding import available_cores
        from hetmoe.online.service import API_KEY_ENV, CORES_ENV, DATA_ENV, MODEL_ENV, STORE_ENV, WARM_ENV, create_app

        if not is_loopback(host) and not api_key:
            raise HetmoeError(
                f"refusing to bind {host} without an API key; pass --api-key (or set ${API_KEY_ENV}), or bind 127.0.0.1"
            )
        if not (model / "config.json").is_file():
            raise HetmoeError(f"{model}: no fitted model here (config.json missing); fit one with 'hetmoe fit-head' "
                              "or 'hetmoe demo'")
        check_port(host, port)  # before the model loads, which takes a while
        logger.info("serving %s on http://%s:%d with %d worker(s)%s", model, host, port, http_workers,
                    ", API key required" if api_key else "")
        if http_workers == 1:
            from hetmoe.online.scorer import Scorer

            scorer = Scorer.load(model, store_root=store, data_dir=data, with_indexes=None)
            if warm:
                scorer.warm()
            app = create_app(scorer, api_key=api_key)
            uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
            return
        # Several processes: uvicorn imports the app factory in each worker, which reads the model path from the env.
        # A worker loading an encoder can hold the GIL for seconds (more on a loaded machine); uvicorn's default 5 s
        # health-check would kill it mid-request, hence the longer limit.
        os.environ[MODEL_ENV] = str(model.resolve())
        for env, path in ((STORE_ENV, store), (DATA_ENV, data)):
            os.environ[env] = str(path.resolve()) if path is not None else ""
        if api_key:
            os.environ[API_KEY_ENV] = api_key
        os.environ[WARM_ENV] = "1" if warm else ""
        os.environ[CORES_ENV] = str(max(1, available_cores() // http_workers))  # workers share the machine's cores
        uvicorn.run("hetmoe.online.service:app_from_env", factory=True, host=host, port=port, workers=http_workers,
                    log_level="warning", access_log=False, timeout_worker_healthcheck=WORKER_HEALTHCHECK_S)
