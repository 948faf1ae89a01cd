"""The heads' error type and the registry that builds a head by name.

``HeadError`` is every problem a user can fix about a head (wrong input, another embedding model, a
damaged folder). ``register`` puts a head class under a name; ``get_head(name, **params)`` builds an
unfitted one and ``head_class(name)`` finds the class, importing a shipped head's module on first
use (``BUILTIN_HEADS``), so loading a logistic head imports neither faiss nor LightGBM.

This module imports no other module of ``heads/``: ``heads.persist`` (folder save/load) and
``heads.base`` (the estimator base) both use it.
"""

from __future__ import annotations

import importlib
from typing import Any

from errors import TweetheadsError

HEADS: dict[str, type] = {}
# The shipped heads by module: each is imported when a head of its name is first built or loaded, so
# loading a logistic head imports neither faiss nor LightGBM (part of `predict`'s start-up).
BUILTIN_HEADS = {"logistic": "heads.logistic", "lightgbm": "heads.lightgbm", "knn": "heads.knn"}


class HeadError(TweetheadsError, ValueError):
    """A problem the user can fix: wrong input, a different embedding model, a damaged head."""


def register(name: str):
    """Class decorator: make a head available as `get_head(name)` and to `load_head`.

    Examples
    --------
    >>> from heads.base import BaseHead
    >>> @register("mine")                      # doctest: +SKIP
    ... class MyHead(BaseHead): ...
    """

    def decorator(cls: type) -> type:
        known = HEADS.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise HeadError(f"head name {name!r} is already taken by {known.__qualname__}; "
                            f"register {cls.__qualname__} under another name")
        cls.name = name
        HEADS[name] = cls
        return cls

    return decorator


def head_names() -> list[str]:
    """Every head name `get_head` knows: the shipped ones and any registered since."""
    return sorted(set(HEADS) | set(BUILTIN_HEADS))


def head_class(name: Any) -> type | None:
    """The class registered as `name`, importing its shipped module on first use; None if unknown."""
    if isinstance(name, str) and name not in HEADS and name in BUILTIN_HEADS:
        importlib.import_module(BUILTIN_HEADS[name])  # its @register fills HEADS
    return HEADS.get(name) if isinstance(name, str) else None


def get_head(name: str, **params: Any):
    """Build an unfitted head by registry name, e.g. `get_head("knn", k=10)`; HeadError for an unknown name or parameter."""
    cls = head_class(name)
    if cls is None:
        raise HeadError(f"unknown head {name!r}; expected one of: {', '.join(head_names())}")
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise HeadError(f"head {name!r} has no parameter(s) {', '.join(unknown)}; "
                        f"its parameters are: {', '.join(cls._get_param_names())}")
    return cls(**params)
