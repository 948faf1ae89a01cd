"""Cheap, swappable classifier heads over cached sentence embeddings.

Each head is a scikit-learn classifier in its own module, registered by name in `HEADS`;
`get_head(name, **params)` and `load_head(folder)` import a shipped head's module on first use
(`heads.base.BUILTIN_HEADS`), so loading one head does not import the others' libraries (faiss,
LightGBM). `from heads import KNNHead` imports that head's module.
"""

from heads.base import BUILTIN_HEADS, HEADS, BaseHead, HeadError, get_head, head_class, head_names, load_head, register

_CLASSES = {"LogisticHead": "logistic", "LightGBMHead": "lightgbm", "KNNHead": "knn"}

__all__ = ["BaseHead", "HeadError", "HEADS", "BUILTIN_HEADS", "get_head", "head_class", "head_names", "load_head",
           "register", *_CLASSES]


def __getattr__(name: str):
    if name in _CLASSES:
        return head_class(_CLASSES[name])
    raise AttributeError(f"module 'heads' has no attribute {name!r}")
