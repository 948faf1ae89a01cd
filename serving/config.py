"""The options of ``tweetheads serve``: where it listens, how it batches, what it accepts."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from embed.errors import DataError


@dataclass(frozen=True)
class ServeConfig:
    """Where to listen, how requests are batched, and the limits a request must keep.

    Parameters
    ----------
    host, port : str, int
        Address to bind: loopback by default (only this machine can call it); port 0 takes a free one.
    max_batch_texts : int
        Texts per encoder call at most: requests queued together are joined up to this many (a
        single request with more is still served whole, in a call of its own).
    max_wait_ms : float
        How long the oldest queued request may wait for others to join its batch.
    max_texts, max_text_chars, max_body_bytes : int
        Per request: texts, characters in one text, and bytes of the body (422, 422 and 413 past them).
    max_queued_texts : int
        Texts waiting for the encoder at most; a request that would pass it gets 503 (try again).
    drain_seconds : float
        After SIGTERM, how long in-flight requests may take to finish before they are cancelled.
    keep_alive_seconds : float
        How long an idle connection is kept open for the client's next request. Longer than the
        client pools' own expiry (httpx 5 s, aiohttp 15 s, a load balancer's 60 s), so the client
        closes an idle connection first: a server that closes at the same moment a pool reuses it
        loses that request (uvicorn's default of 5 s equals httpx's; the likely cause of one lost
        request in a thousand in a CI run, not reproduced).
    drift_window, drift_every : int
        The drift check (:mod:`serving.drift`): the vectors of the last ``drift_window`` texts are
        checked against the head's training vectors every ``drift_every`` texts (0: no check).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_texts: int = 128
    max_wait_ms: float = 2.0
    max_texts: int = 256
    max_text_chars: int = 10_000
    max_body_bytes: int = 4 * 2**20
    max_queued_texts: int = 8192
    drain_seconds: float = 30.0
    keep_alive_seconds: float = 75.0
    drift_window: int = 1000
    drift_every: int = 250

    def __post_init__(self):
        if self.drift_window != 0 and self.drift_window < 10:  # DriftConfig's least: 2 x 5 folds
            raise DataError(f"--drift-window must be 0 (no drift check) or at least 10 texts, got {self.drift_window}")
        if self.drift_every < 1:
            raise DataError(f"--drift-every must be at least 1 text, got {self.drift_every}")

    def limits(self) -> dict:
        """What ``/info`` reports, so a client can see the limits before it meets them."""
        return {k: v for k, v in asdict(self).items() if k not in ("host", "port", "drift_window", "drift_every")}
