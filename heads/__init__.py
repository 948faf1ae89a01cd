"""Cheap, swappable classifier heads over cached sentence embeddings.

Each head is a scikit-learn classifier in its own module; importing this package registers
all of them in `HEADS`, so `get_head(name, **params)` and `load_head(folder)` can find them.
"""

from heads.base import HEADS, BaseHead, HeadError, get_head, load_head, register
from heads.knn import KNNHead
from heads.lightgbm import LightGBMHead
from heads.logistic import LogisticHead

__all__ = ["BaseHead", "HeadError", "HEADS", "get_head", "load_head", "register",
           "LogisticHead", "LightGBMHead", "KNNHead"]
