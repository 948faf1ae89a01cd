"""The one base of every error the library raises on purpose: ``TweetheadsError``.

Each room subclasses it (``embed.errors.DataError`` / ``ModelError``, ``cache.CacheError``,
``heads.HeadError``), so ``cli.py`` catches one class and a user's script can too::

    from errors import TweetheadsError
    try:
        Predictor.load("minilm", "heads/logistic").predict(texts)
    except TweetheadsError as exc:
        print(exc)  # what was expected, what was found, what to do

It sits at ground level beside ``fileio.py`` and imports nothing, so ``cache/`` and ``heads/``
(which may not import ``embed/``) share it.
"""


class TweetheadsError(Exception):
    """A problem the user can fix: the message says what was expected, what was found and what to do."""
