"""Exceptions raised by the library. Only ``cli.py`` turns them into exit codes and messages."""


class TweetheadsError(Exception):
    """A problem the user can fix: the message says what was expected, what was found and what to do."""


class DataError(TweetheadsError):
    """Input file problems: missing file, unknown column, empty cells, unknown labels."""


class ModelError(TweetheadsError):
    """A model that cannot be found, loaded or matched."""
