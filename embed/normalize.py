"""Tweet normalization, versioned and applied identically at training, embedding and scoring time.

Version ``tweet-v1``: user mentions become ``@user``, links become ``http`` (both matched
case-insensitively, as TweetNLP and TweetEval do) and runs of whitespace, newlines included,
collapse to one space. The version string is part of every model fingerprint, so changing the
rules here can never return vectors cached under the old rules.
"""
from __future__ import annotations

import re

NORMALIZATION_VERSION = "tweet-v1"
NO_NORMALIZATION = "none"

_MENTION = re.compile(r"(?<![\w@])@\w+", re.IGNORECASE)
_LINK = re.compile(r"\b(?:https?://|www\.)\S*", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def normalize_tweet(text: str) -> str:
    """Return the normalized form of one tweet (``tweet-v1``)."""
    text = _MENTION.sub("@user", text)
    text = _LINK.sub("http", text)
    return _SPACE.sub(" ", text).strip()


def normalizer(enabled: bool = True):
    """Return ``(function, version)``; the identity with version ``none`` when disabled."""
    if enabled:
        return normalize_tweet, NORMALIZATION_VERSION
    return (lambda text: text), NO_NORMALIZATION
