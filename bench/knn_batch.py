"""The kNN head's vote, scored again one pair at a time (0de8ccc), against the search's own similarities.

    python bench/knn_batch.py [--k 15] [--rounds 5]

Frozen MiniLM CLS vectors of all GOP tweets (``embed`` with no flags: this CPU's default precision),
a seeded 80/20 permutation split; one ``get_head("knn", k=K)`` (flat index) fitted on the 80%.
``rerank`` is the head as it is; ``search only`` is the same fitted head voting with the search's own
similarities and neighbours (the code before 0de8ccc; ``_reranks`` forced off). For 1, 100 and all
2,775 eval queries a call: best-of-``--rounds`` milliseconds. Then accuracy of each, how many
predictions the two differ on, and how many predictions change between one call of all eval rows
and calls of 100 (``search="auto"`` picks FAISS for the one, the BLAS for the others). Not part of
``bench/run.py``: a table on stdout, pasted into BENCHMARKS.md's kNN section.
"""
from __future__ import annotations

import argparse

import numpy as np

from common import Table, best_seconds, cpu_header, gop_tweets, log, temp_dir


def run(k: int, rounds: int) -> Table:
    from embed.encoder import Embedder
    from heads import get_head

    texts, labels = gop_tweets()
    with temp_dir() as tmp:
        embedder = Embedder("minilm", cache_dir=tmp / "cache")
        vectors, _ = embedder.embed(texts)
        precision = embedder.load().precision
    vectors, labels = np.asarray(vectors, dtype=np.float32), np.asarray(labels)
    order = np.random.default_rng(0).permutation(len(vectors))
    cut = int(len(vectors) * 0.8)
    train, test = order[:cut], order[cut:]
    head = get_head("knn", k=k).fit(vectors[train], labels[train])
    queries = vectors[test]

    def variant(reranks: bool):
        if reranks:
            head.__dict__.pop("_reranks", None)
        else:
            head._reranks = lambda: False  # the search's own similarities, as before 0de8ccc

    table = Table(title=f"kNN head (k={k}, flat) on GOP eval: reranked vote against the search's own",
                  compared=(f"{cpu_header()} Frozen MiniLM CLS vectors ({precision}), {len(train):,} stored, "
                            f"{len(test):,} eval queries; best of {rounds} calls; the same fitted head."),
                  columns=["queries a call", "rerank ms", "search only ms", "search only / rerank"])
    for n in (1, 100, len(test)):
        found = {}
        for reranks in (True, False):
            variant(reranks)
            found[reranks] = best_seconds(lambda: head.predict_proba(queries[:n]), rounds) * 1e3
        table.add(f"{n:,}", found[True], found[False], f"{found[False] / found[True]:.2f}x")
        log(f"{n} queries: {found}")
    for reranks, name in ((True, "rerank"), (False, "search only")):
        variant(reranks)
        whole = head.predict(queries)
        pieces = np.concatenate([head.predict(queries[i:i + 100]) for i in range(0, len(queries), 100)])
        table.notes.append(f"{name}: accuracy {np.mean(whole == labels[test]):.4f}; predictions that differ between "
                           f"one call of {len(test):,} rows and calls of 100: {int(np.sum(whole != pieces))}.")
        if reranks:
            mine = whole
    variant(False)
    table.notes.append(f"Predictions that differ between the two votes (one call each): "
                       f"{int(np.sum(mine != head.predict(queries)))} of {len(test):,}.")
    variant(True)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(run(args.k, args.rounds).markdown())


if __name__ == "__main__":
    main()
