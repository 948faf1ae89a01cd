"""Exceptions raised by embed/ and scoring/; all derive from ``errors.TweetheadsError`` (the one base).

Only ``cli.py`` turns them into exit codes and messages.
"""
from errors import TweetheadsError

__all__ = ["TweetheadsError", "DataError", "ModelError"]


class DataError(TweetheadsError):
    """Input file problems: missing file, unknown column, empty cells, unknown labels."""


class ModelError(TweetheadsError):
    """A model that cannot be found, loaded or matched."""
