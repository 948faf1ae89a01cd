"""The HTTP routes (Starlette): ``POST /predict``, ``GET /health``, ``GET /info``, ``GET /drift``; errors are JSON.

``POST /predict`` takes ``{"texts": [...]}`` (see :mod:`serving.body` for what is refused and with
which status) and answers ``{"model", "head", "predictions": [{"label", "proba": {class: p},
"truncated"}]}``, one prediction per text, in order. ``GET /health`` answers 200 with the counters
(requests, texts, encoder calls, cache misses, in flight); ``GET /info`` the model, head, classes,
fingerprint, backend and precision (``Predictor.info()``) and the limits; ``GET /drift`` the drift
check over the last requests' vectors (:mod:`serving.drift`: the domain AUC, whether it fired, the
window's counters, or why no check runs). Unknown paths and methods
get 404 / 405 as JSON; anything unexpected 500 with one line (the traceback goes to stderr).

A client that disconnects while its texts wait or are encoded is noticed (``http.disconnect``):
its request is dropped from the queue, or its rows from the batch, and nobody else's answer changes.
"""
from __future__ import annotations

import asyncio
import sys
import time
import traceback
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .batcher import MicroBatcher
from .body import RequestError, parse_texts, too_large
from .config import ServeConfig


def build_app(predictor, batcher: MicroBatcher, config: ServeConfig, *, on_stop=None, drift=None) -> Starlette:
    """The ASGI app for one ``Predictor``; ``batcher`` runs its calls (``on_stop`` in its thread at the end);
    ``drift`` (a :mod:`serving.drift` monitor) answers ``GET /drift``."""
    info = predictor.info() | {"limits": config.limits()}
    classes = predictor.classes_.tolist()
    ids = {"model": predictor.model_id, "head": predictor.head_id}
    state = {"in_flight": 0, "refused": 0}

    async def predict(request: Request) -> Response:
        state["in_flight"] += 1
        try:
            texts = parse_texts(await _read_body(request, config.max_body_bytes), config)
            if not texts:
                return JSONResponse(ids | {"predictions": []})
            answer = await _answer_or_gone(batcher.submit(texts), request.receive)
            if answer is None:  # the client left: nobody to answer
                return Response(status_code=499)
            proba, truncated = answer
            picked = proba.argmax(axis=1).tolist()
            predictions = [{"label": classes[k], "proba": dict(zip(classes, row)), "truncated": cut}
                           for k, row, cut in zip(picked, proba.tolist(), truncated.tolist())]
            return JSONResponse(ids | {"predictions": predictions})
        except RequestError as exc:
            state["refused"] += 1
            headers = {"Retry-After": "1"} if exc.status == 503 else None
            if exc.status == 413:
                headers = {"Connection": "close"}  # the rest of the body is not read
            return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
        except ClientDisconnect:
            return Response(status_code=499)
        except Exception as exc:  # a failed batch (its request alone: see MicroBatcher) or a bug here
            return await _internal_error(request, exc)
        finally:
            state["in_flight"] -= 1

    async def health(request: Request) -> Response:
        c = batcher.counters
        return JSONResponse({"status": "ok", "in_flight": state["in_flight"], "queued_texts": batcher.queued_texts,
                             "uptime_s": round(time.time() - c.started, 3),
                             "served": {"requests": c.requests, "texts": c.texts, "encoder_calls": c.batches,
                                        "encoded": c.encoded, "largest_batch": c.largest_batch,
                                        "clients_left": c.left, "refused": state["refused"]}})

    async def show_info(request: Request) -> Response:
        return JSONResponse(info)

    async def show_drift(request: Request) -> Response:
        if drift is None:
            return JSONResponse({"skipped": "no drift monitor", "fired": False, "auc": None})
        return JSONResponse(drift.state())

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop(on_stop)

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health, methods=["GET"]),
                             Route("/info", show_info, methods=["GET"]), Route("/drift", show_drift, methods=["GET"])],
                     exception_handlers={HTTPException: _http_error, Exception: _internal_error}, lifespan=lifespan)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to pass ``limit``: from Content-Length, else while read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(None, limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _answer_or_gone(future: asyncio.Future, receive):
    """The batch's answer for this request, or None (and the request withdrawn) if its client disconnects first."""
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({future, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if future.done():
        return future.result()
    future.cancel()
    return None


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _http_error(request: Request, exc: HTTPException) -> Response:
    routes = "POST /predict, GET /health, GET /info, GET /drift"
    messages = {404: f"no such path {request.url.path!r}; the server has {routes}",
                405: f"{request.method} is not allowed on {request.url.path}; the server has {routes}"}
    return JSONResponse({"error": messages.get(exc.status_code, str(exc.detail)), "code": f"http_{exc.status_code}"},
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _internal_error(request: Request, exc: Exception) -> Response:
    print(f"serve: {request.method} {request.url.path} failed:", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)
    return JSONResponse({"error": f"internal error ({type(exc).__name__}: {exc}); the server's log has the details",
                         "code": "internal"}, status_code=500)
