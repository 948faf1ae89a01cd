"""The GPU section of BENCHMARKS.md, rendered from what the last GPU session wrote.

A GPU is lent to some sessions only (15 minutes, one prepared script), so ``bench/run.py`` cannot
measure it; ``bench/gpu_session.sh`` (after ``bench/gpu_prepare.sh``) runs ``bench/gpu_speed.py``
there and its ``gpu.md`` is saved under ``bench/results/gpu-h100/`` (one file per call). This
module puts those tables side by side, run by run, so the section is rewritten by the same one
command as the rest. Nothing is measured here.
"""
from __future__ import annotations

import re

import common  # bench/ is on sys.path
from common import Table

RESULTS = common.REPO / "bench" / "results" / "gpu-h100"


def _blocks(text: str) -> dict[str, tuple[str, list[str], list[list[str]]]]:
    """``{title: (description, columns, rows)}`` for each ``#### title`` table in a gpu.md."""
    blocks = {}
    for chunk in re.split(r"^#### ", text, flags=re.M)[1:]:
        lines = chunk.strip().splitlines()
        title = lines[0].strip()
        table = [ln for ln in lines if ln.startswith("|")]
        prose = " ".join(ln for ln in lines[1:] if ln and not ln.startswith("|")).strip()
        if len(table) < 3:
            blocks[title] = (prose, [], [])
            continue
        columns = [c.strip() for c in table[0].strip("|").split("|")]
        rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in table[2:]]
        blocks[title] = (prose, columns, rows)
    return blocks


def run(quick: bool = False) -> list[Table]:
    runs = sorted(RESULTS.glob("gpu-run*.md"))
    if not runs:
        return [Table("Not yet measured on a GPU", "No `bench/results/gpu-h100/gpu-run*.md` yet: run "
                      "`bash bench/gpu_prepare.sh` here, then `bash bench/gpu_session.sh` on the GPU machine.",
                      ["-"])]
    texts = [path.read_text() for path in runs]
    header = [ln[2:] for ln in texts[0].splitlines() if ln.startswith("- ")]
    parsed = [_blocks(text) for text in texts]
    tables = []
    for title, (prose, columns, rows) in parsed[0].items():
        if not columns:
            tables.append(Table(title, prose, ["-"]))
            continue
        key, values = columns[0], columns[1:]
        merged_columns = [key] + [f"{v} (call {i + 1})" for i in range(len(parsed)) for v in values]
        table = Table(title, prose, merged_columns)
        for row in rows:
            cells = [row[0]]
            for other in parsed:
                match = next((r for r in other.get(title, ("", [], []))[2] if r[0] == row[0]), None)
                cells += match[1:] if match else ["-"] * len(values)
            table.add(*cells)
        tables.append(table)
    stamps = [re.search(r"_Measured ([^_]*?) UTC", t) for t in texts]
    tables[0].notes.insert(0, "Machine: " + "; ".join(header) + ". Measured " +
                           ", ".join(f"{m.group(1)} UTC (call {i + 1})" for i, m in enumerate(stamps) if m) +
                           " by `bench/gpu_speed.py` through `bash bench/gpu_session.sh`, the same script in "
                           "two device calls; each table shows both.")
    tables[-1].notes += [
        "What did not travel: the device tool carries at most 64 MiB per call. MiniLM went as fp16 (46 MB, "
        "`scripts/ship_model.py`) and was restored to fp32 there (embeddings of three test tweets at cosine 0.9999994 or more to the original's, on the CPU); MPNet's "
        "five volumes (404 MB) could not go, so its table is skipped; faiss-gpu-cu12 (a 48 MB wheel built for "
        "CUDA 12 libraries; the image has CUDA 13) and faiss-cpu (19 MB) did not fit beside MiniLM, so the kNN "
        "head did not run and the table above times exact search in torch instead.",
        "On the GPU, `encode_new` is 1.16x to 1.26x `encode()` in every precision: MiniLM at batch 64 is too "
        "small to be bound by arithmetic there, so fp16/bf16 do not pay (not profiled further).",
        "The 200-step fine-tune uses the library's default on a GPU (bf16 autocast) and is short enough for "
        "start-up to weigh: 54 and 111 examples/s in the two calls. The card-recipe run (fp32, 12,543 steps "
        "of batch 8) trained at 386 examples/s on the same H100; the cause of the gap was not isolated.",
    ]
    return tables


if __name__ == "__main__":
    common.main(run)
