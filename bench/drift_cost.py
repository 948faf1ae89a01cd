"""What one drift check costs: ``domain_auc`` on 1,000 + 1,000 MiniLM vectors, one BLAS thread against the default.

One command (offline; embeds 2,000 GOP tweets with frozen MiniLM through the default cache, then a
few seconds per round, more where the default threads are slow)::

    python bench/drift_cost.py [--rounds 3] [--out FILE]

``scoring.drift.domain_auc`` runs its 5 logistic fits under ``threadpool_limits(1, "blas")``. This
times it as it is and with that limit lifted (the library's default BLAS threads), alternately in
the same process on the same vectors (two disjoint random halves of 2,000 GOP tweets: an in-domain
pair, the slow case for the fits), and checks both give the same AUC. Wall and CPU seconds per
check; the machine's load average is printed beside each round (the gap depends on how busy the
cores are).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _NoLimit:
    """Stands in for ``threadpool_limits``: the library's default threads."""

    def __init__(self, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import threadpoolctl

    from calibration import data_dir  # bench/ is on sys.path when run as python bench/drift_cost.py
    from common import cpu_header
    from embed.data import load_texts
    from embed.encoder import Embedder
    from scoring.drift import domain_auc

    texts = load_texts(data_dir() / "gop-debate" / "Sentiment.csv", "text", "sentiment").texts
    rows = np.random.default_rng(0).choice(len(texts), 2000, replace=False)
    vectors, _ = Embedder("minilm", progress=False).embed([texts[i] for i in rows])
    a, b = vectors[:1000], vectors[1000:]
    real, rounds = threadpoolctl.threadpool_limits, []
    for _ in range(args.rounds):
        result = {"load_average": os.getloadavg()[0]}
        for name, limit in (("one_blas_thread", real), ("default_threads", _NoLimit)):
            threadpoolctl.threadpool_limits = limit
            try:
                wall, cpu = time.perf_counter(), time.process_time()
                auc = domain_auc(a, b).auc
                result[name] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "auc": auc}
            finally:
                threadpoolctl.threadpool_limits = real
        rounds.append(result)
        print(json.dumps(result))
    summary = {"header": cpu_header(), "threads": threadpoolctl.threadpool_info(), "rounds": rounds}
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
