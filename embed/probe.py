"""The probe set shipped with tweetheads: 64 tweet-like texts written for it (``samples/probe.csv``).

A head keeps the vectors its training model gave these texts (``BaseHead.set_probe``); on another
machine, or with another backend or precision, the same texts are embedded again and the head is
used only if the two sets of vectors agree (``BaseHead.check_fingerprint``). The check needs texts
in the domain, not the user's own: with this set a saved head holds none of its training data.
The texts are political-debate tweets of every length (two over 40 words), with mentions and
links for the normalizer, and share no text with ``samples/tweets.csv`` (tests/test_cards.py).
"""
from __future__ import annotations

from pathlib import Path

from .data import load_texts
from .errors import DataError

PROBE_SET = Path(__file__).parent / "samples" / "probe.csv"
PROBE_SIZE = 64


def shipped_probe() -> list[str]:
    """The 64 probe texts, in file order."""
    texts = load_texts(PROBE_SET, "text").texts
    if len(texts) != PROBE_SIZE or len(set(texts)) != PROBE_SIZE:
        raise DataError(f"{PROBE_SET}: expected {PROBE_SIZE} distinct texts, found {len(set(texts))} of {len(texts)}; "
                        "reinstall tweetheads")
    return texts
