"""The peer of a warm ``score``: the script a user would write with pandas when the vectors are on disk.

    python bench/pandas_score.py IN.csv|IN.parquet VECTORS.npy HEAD OUT.csv

``read_csv`` (or ``read_parquet``), the vectors of the rows from a saved ``.npy`` (one row per input
row, in file order: no normalization, no hashing, no cache look-up), the head's ``predict_proba``
(the same head folder ``score`` uses, so the classifier's cost is the same), then ``to_csv``. It
checks nothing and rejects nothing: it is the speed a clean file allows. Used by
``bench/score_warm.py``.
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from heads import load_head


def main(source: str, vectors: str, head: str, output: str) -> None:
    frame = pd.read_parquet(source) if source.endswith(".parquet") else pd.read_csv(source, dtype=str,
                                                                                     keep_default_na=False)
    X = np.load(vectors)
    model = load_head(head)
    proba = model.predict_proba(X)
    frame["pred_label"] = np.asarray(model.classes_)[proba.argmax(axis=1)]
    for j, name in enumerate(model.classes_):
        frame[f"pred_proba_{name}"] = proba[:, j]
    frame.to_csv(output, index=False)


if __name__ == "__main__":
    main(*sys.argv[1:5])
