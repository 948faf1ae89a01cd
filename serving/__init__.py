"""``tweetheads serve``: one checked ``Predictor`` behind HTTP, concurrent requests batched into one encoder call.

The pieces, one file each: ``config`` (the options, a small dataclass), ``body`` (a request body
to a list of texts, or an error with its status code), ``batcher`` (requests that arrive together
become one ``Predictor`` call in the one encoder thread), ``store`` (the embedding cache kept open
for the server's life, its writes committed off the request path), ``app`` (the Starlette routes)
and ``server`` (uvicorn on a socket bound after the head was checked; SIGTERM drains, then exits 0).

Left out: authentication and TLS (it binds to loopback by default; put a proxy in front to expose
it), more than one encoder process (one model copy, one thread: the encoder is not re-entrant).

Examples
--------
>>> from serving import ServeConfig, load_predictor, serve       # doctest: +SKIP
>>> serve(load_predictor(Embedder("minilm"), "heads/logistic"), ServeConfig(port=8000))  # doctest: +SKIP
"""
from .config import ServeConfig

__all__ = ["ServeConfig", "load_predictor", "serve"]


def load_predictor(embedder, head):
    """``Predictor.load`` with the server's cache store (see :mod:`serving.store`); same checks, same errors."""
    from .server import load_predictor as load

    return load(embedder, head)


def serve(predictor, config: ServeConfig, *, announce=None) -> None:
    """Serve ``predictor`` until SIGTERM or Ctrl-C (see :func:`serving.server.serve`)."""
    from .server import serve as run

    run(predictor, config, announce=announce or (lambda line: print(line, flush=True)))
