"""Start-up, listening and shutdown: the head is checked before the port opens; SIGTERM drains, then returns.

The order: ``load_predictor`` (the model resolved, the head checked against it: a head of another
model is refused here, with ``score``'s message), then the encoder thread warms up (the compiled
encoder, the tokenizer, the cache store), then the socket is bound (a port in use is an error
that says so), then uvicorn serves and ``announce`` prints the URL. On SIGTERM (or Ctrl-C) uvicorn
stops accepting, lets the requests in flight finish (up to ``drain_seconds``), the batcher answers
what is queued and the cache commits its last vectors; ``serve`` then returns normally, so the
command exits 0 (uvicorn raises the signal again after its shutdown; the handler set here takes it).
A second Ctrl-C stops at once.
"""
from __future__ import annotations

import signal
import socket
import sys

import numpy as np

from embed.errors import DataError

from .config import ServeConfig


class ServeError(DataError):
    """The server cannot start as asked (a port in use, an address that does not resolve)."""


def load_predictor(embedder, head):
    """``Predictor.load(embedder, head)`` on a :class:`~serving.store.ServingEmbedder` with ``embedder``'s settings."""
    from scoring.predictor import Predictor

    from .store import ServingEmbedder

    return Predictor.load(ServingEmbedder.like(embedder), head)


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (port 0: a free one), or ServeError saying what to change."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ServeError(f"--host {host!r} does not resolve ({exc.strerror}); pass an address such as 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port "
                         "(--port 0 takes a free one)") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (an IPv6 host in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(predictor, config: ServeConfig, *, announce=print) -> None:
    """Serve ``predictor`` over HTTP until SIGTERM or Ctrl-C; ``announce(line)`` says where, once it answers."""
    import uvicorn

    from .app import build_app
    from .batcher import MicroBatcher

    from .drift import monitor_for

    embedder = predictor.embedder
    drift = monitor_for(predictor, config.drift_window, config.drift_every)
    batcher = MicroBatcher(lambda texts: predictor.predict_counted(texts, drift.add),
                           max_batch_texts=config.max_batch_texts,
                           max_wait=config.max_wait_ms / 1000, max_queued_texts=config.max_queued_texts)

    def warm_up() -> None:  # in the encoder thread: what it keeps open is made there
        if hasattr(embedder, "open_live_store"):
            embedder.open_live_store()
        embedder.encode_new(["warm up the encoder"])  # compiles it; bypasses the cache
        predictor.predict_counted([])  # builds the truncation check (the tokenizer)
        predictor.classifier.predict_proba(np.zeros((1, embedder.load().dim), dtype=np.float32))

    def finish() -> None:
        drift.stop()
        if hasattr(embedder, "close_live_store"):
            embedder.close_live_store()

    try:
        batcher.start_worker(warm_up)
    except BaseException:
        batcher.executor.shutdown(wait=False)
        raise
    sock = bind(config.host, config.port)
    url = url_of(sock)
    if not _loopback(sock):
        print(f"note: listening on {url}, reachable from other machines; the server has no authentication",
              file=sys.stderr)
    app = build_app(predictor, batcher, config, on_stop=finish, drift=drift)
    drift.start()
    ready = (f"serving {url}  model {predictor.model_id}  head {predictor.head_id}  "
             "(POST /predict, GET /health, GET /info, GET /drift; SIGTERM or Ctrl-C stops it)")
    server = _announcing_server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                               timeout_graceful_shutdown=config.drain_seconds, backlog=2048,
                                               timeout_keep_alive=config.keep_alive_seconds),
                                ready=lambda: announce(ready))
    # uvicorn drains on SIGTERM, then raises it again to whatever handler was there: this one ends quietly
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    c = batcher.counters
    print(f"stopped: {c.requests:,} requests, {c.texts:,} texts in {c.batches:,} encoder calls "
          f"({c.encoded:,} encoded, the rest from the cache)", file=sys.stderr)


def _loopback(sock: socket.socket) -> bool:
    host = sock.getsockname()[0]
    return host.startswith("127.") or host == "::1"


def _announcing_server(config, ready):
    """uvicorn's server, calling ``ready()`` once it answers (after its start-up, not before)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started and not self.should_exit:
                ready()

    return Server(config)
