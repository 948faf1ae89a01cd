"""The card, reproduced: our runs' per-epoch tables and learning curves next to the reference card's.

Reads what the runs wrote (nothing is trained here; ``bench/run.py`` includes this section because
it is cheap):

- the reference card's training results, quoted below with their source;
- ``bench/results/gpu-h100/card-metrics.json``: ``finetune`` with the card's defaults (lr 1e-6,
  batch 8, 20 epochs, seed 42, Adam, linear schedule, fp32) with MiniLM on our GOP 80/20 split, run
  on a lent H100 by ``bench/gpu_session.sh``;
- ``bench/results/gop-minilm-2ep/``: the faster recipe (lr 2e-5, 2 epochs) on this CPU and the three
  heads on its cached embeddings (``python cli.py compare``, see BENCHMARKS.md's last section).

Writes ``bench/results/card/learning_curves.png``.
"""
from __future__ import annotations

import json

import common  # bench/ is on sys.path
from common import Table

from embed.model_card import fixed

CARD_URL = ("https://huggingface.co/Theivaprakasham/"
            "sentence-transformers-msmarco-distilbert-base-tas-b-twitter_sentiment")
# (epoch, step, training loss, validation loss, accuracy): all 20 rows of the card's "Training results",
# copied from its README.md at commit 7d54e3afc0dec7ee2f4fb60a0a4662f471b29ea7 (2,705 bytes).
CARD_ROWS = [
    (1, 1387, 0.8892, 0.8472, 0.6180), (2, 2774, 0.7965, 0.7797, 0.6609), (3, 4161, 0.7459, 0.7326, 0.6872),
    (4, 5548, 0.7096, 0.7133, 0.6995), (5, 6935, 0.6853, 0.6998, 0.7002), (6, 8322, 0.6561, 0.6949, 0.7059),
    (7, 9709, 0.6630, 0.6956, 0.7077), (8, 11096, 0.6352, 0.6890, 0.7164), (9, 12483, 0.6205, 0.6888, 0.7117),
    (10, 13870, 0.6203, 0.6871, 0.7121), (11, 15257, 0.6005, 0.6879, 0.7171), (12, 16644, 0.5985, 0.6870, 0.7139),
    (13, 18031, 0.5839, 0.6882, 0.7164), (14, 19418, 0.5861, 0.6910, 0.7124), (15, 20805, 0.5732, 0.6916, 0.7153),
    (16, 22192, 0.5797, 0.6947, 0.7110), (17, 23579, 0.5565, 0.6930, 0.7175), (18, 24966, 0.5636, 0.6959, 0.7106),
    (19, 26353, 0.5642, 0.6952, 0.7132), (20, 27740, 0.5717, 0.6954, 0.7146),
]
RESULTS = common.REPO / "bench" / "results"


def _load(path):
    return json.loads(path.read_text()) if path.exists() else None


def run(quick: bool = False) -> list[Table]:
    card_run = _load(RESULTS / "gpu-h100" / "card-metrics.json")
    fast_run = _load(RESULTS / "gop-minilm-2ep" / "metrics.json")
    fast_report = _load(RESULTS / "gop-minilm-2ep" / "results.json")
    cpu_run = _load(RESULTS / "card-cpu" / "metrics.json")  # the same recipe on this CPU, where one ran
    ours = {int(round(r["epoch"])): r for r in (card_run or {}).get("history", [])}
    cpu = {int(round(r["epoch"])): r for r in (cpu_run or {}).get("history", [])}
    fast = {int(round(r["epoch"])): r for r in (fast_run or {}).get("history", [])}
    card = {row[0]: row for row in CARD_ROWS}
    epochs = sorted(set(card) | set(ours) | set(fast) | set(cpu))
    table = Table(
        title="Per epoch: the reference card (tas-b, its split) against `finetune` with its defaults (MiniLM, our split)",
        compared=(f"Card: [{CARD_URL.split('/')[-1]}]({CARD_URL}), msmarco-distilbert-base-tas-b (66M parameters, "
                  "768-d), HF Trainer, its own 80/20 split of the same tweets. Ours: `python cli.py finetune "
                  "--model minilm --precision fp32` with every other value the default (lr 1e-6, batch 8, 20 "
                  "epochs, seed 42, Adam betas (0.9, 0.999), eps 1e-8, linear schedule), MiniLM-L6 (22.7M "
                  "parameters, 384-d) on `cli.py split` of the GOP tweets (11,096 / 2,775 rows), run on a lent "
                  "H100 by `bench/gpu_session.sh` (9 epochs) and with `--device cpu` (20 epochs) on the 2-core "
                  "AMD EPYC CPU machine of 2026-11 (AVX-512 BF16, no AMX). Faster recipe: the same command with "
                  "`--lr 2e-5 --epochs 2` on that CPU."),
        columns=["epoch", "step", "card train loss", "card val loss", "card accuracy", "ours (H100) train loss",
                 "ours (H100) val loss", "ours (H100) accuracy"]
                + (["ours (CPU) val loss", "ours (CPU) accuracy"] if cpu else [])
                + ["faster recipe accuracy"])
    for e in epochs:
        c, o, f, u = card.get(e), ours.get(e), fast.get(e), cpu.get(e)
        cells = [e, c[1] if c else (o or u or f)["step"],
                 fixed(c[2]) if c else "-", fixed(c[3]) if c else "-", fixed(c[4]) if c else "-",
                 fixed(o["training_loss"]) if o else "-", fixed(o["validation_loss"]) if o else "-",
                 fixed(o["accuracy"]) if o else "-"]
        cells += [fixed(u["validation_loss"]) if u else "-", fixed(u["accuracy"]) if u else "-"] if cpu else []
        table.add(*cells, fixed(f["accuracy"]) if f else "-")
    if cpu_run:
        table.notes.append(_cpu_note(cpu_run, card))
    if card_run:
        done, total = card_run["steps"], card_run["total_steps"]
        seconds, eps = card_run["train_seconds"], card_run["examples_per_second"]
        table.notes.append(
            f"Our card-recipe run on the H100 stopped at step {done:,} of {total:,} (epoch "
            f"{done / card_run['steps_per_epoch']:.1f} of 20), at its time limit. It trained at {eps:.0f} "
            f"examples/s ({seconds:.0f} s inside training steps), so the 20 epochs take about "
            f"{total * 8 / eps / 60:.0f} minutes there. Its checkpoint was written inside the folder that is copied "
            "to the GPU machine, which a later copy replaces, so it could not be resumed (`bench/gpu_session.sh` "
            "now writes runs outside that folder), and no heads were fitted on it.")
        at9 = ours.get(9)
        if at9:
            table.notes.append(
                f"At epoch 9 our MiniLM run is at {at9['accuracy']:.4f} (validation loss {at9['validation_loss']:.4f}), "
                f"the card's tas-b at {card[9][4]:.4f} ({card[9][3]:.4f}). At lr 1e-6 MiniLM moves more slowly "
                "than tas-b: it stays at the majority-class rate (0.6205) for two epochs, and its "
                "validation loss is still falling at epoch 9.")
    cpu_report = _load(RESULTS / "card-cpu" / "results.json")
    if cpu_run and cpu_report:
        table.notes.append(
            f"Heads on the CPU card-recipe run's cached CLS embeddings, fitted on its final weights (after epoch "
            f"{len(cpu_run['history'])}, step {cpu_run['steps']:,}), `python cli.py compare` (all / novel rows): "
            f"{_methods_line(cpu_report)}. McNemar p against end-to-end on all rows: {_mcnemar_line(cpu_report)}; "
            "macro-F1: " + ", ".join(f"{_short(m)} {m['all']['macro_f1']:.4f}" for m in cpu_report["methods"]
                                     if m["kind"] in ("e2e", "head"))
            + ". Report: `bench/results/card-cpu/report.md`.")
    if fast_run and fast_report:
        by_name = {m["name"]: m for m in fast_report["methods"]}
        e2e = next(m for m in fast_report["methods"] if m["kind"] == "e2e")
        parts = _methods_line(fast_report, kinds=("head",))
        table.notes.append(
            f"Faster recipe, final epoch: end-to-end {e2e['all']['accuracy']:.4f} on all {fast_report['rows']:,} "
            f"eval rows / {e2e['novel']['accuracy']:.4f} on the {fast_report['novel_rows']:,} novel rows (text not "
            f"in train); the heads on its cached CLS embeddings (all / novel): {parts}; majority class "
            f"{by_name['majority class']['all']['accuracy']:.4f}. It took {fast_run['train_seconds'] / 60:.0f} "
            f"minutes inside training steps on that CPU ({fast_run['examples_per_second']:.1f} examples/s, "
            "with other jobs on the cores): 2 epochs reach more than the card's 20-epoch 0.7146 (another model "
            "and another split, so the comparison is loose).")
    plot = _plot(card, ours, fast, cpu)
    if plot:
        table.notes.append(f"Learning curves: `{plot.relative_to(common.REPO)}`.")
    final = _final_table(cpu_report, fast_report)
    return [table] + ([final] if final else [])


def _final_table(cpu_report: dict | None, fast_report: dict | None) -> Table | None:
    """The last epoch side by side: the card's figure, each run end to end, and the heads on its cache."""
    if not (cpu_report or fast_report):
        return None
    table = Table(
        title="After the last epoch: the card, our end-to-end runs, and the heads on their cached CLS vectors",
        compared=("Each block is one `python cli.py compare` report on the same 2,775 eval rows (1,989 of them "
                  "novel: their normalized text is not in train). The card's figure is quoted; it was measured "
                  "on the card's own split. McNemar p compares each head with its own run's end-to-end model on "
                  "the same rows."),
        columns=["run", "method", "accuracy (all rows)", "95% CI", "accuracy (novel rows)", "macro-F1",
                 "McNemar p vs end-to-end"])
    table.add("reference card, tas-b, lr 1e-6, 20 epochs", "end-to-end (quoted)", fixed(CARD_ROWS[-1][4]),
              "-", "-", "-", "-")
    runs = [("MiniLM, card recipe (lr 1e-6, 20 epochs), CPU", cpu_report),
            ("MiniLM, faster recipe (lr 2e-5, 2 epochs), CPU", fast_report)]
    majority = None
    for label, report in runs:
        if not report:
            continue
        for m in report["methods"]:
            if m["name"] == "majority class":
                majority = majority or m
            if m["kind"] not in ("e2e", "head"):
                continue
            a, n = m["all"], m["novel"]
            p = a.get("mcnemar_p_vs_e2e")
            table.add(label, _short(m), fixed(a["accuracy"]), "{:.3f}-{:.3f}".format(*a["accuracy_ci95"]),
                      fixed(n["accuracy"]), fixed(a["macro_f1"]),
                      "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}"))
    if majority:
        table.add("-", "majority class", fixed(majority["all"]["accuracy"]), "-",
                  fixed(majority["novel"]["accuracy"]), fixed(majority["all"]["macro_f1"]), "-")
    if cpu_report and fast_report:
        e2e = {key: next(m for m in r["methods"] if m["kind"] == "e2e")["all"]["accuracy"]
               for key, r in (("cpu", cpu_report), ("fast", fast_report))}
        table.notes.append(
            f"Per hour on that CPU: the faster recipe reached {e2e['fast']:.4f} end to end in 2,774 steps (42 minutes "
            f"of training steps while other jobs shared the cores); the card's recipe reached {e2e['cpu']:.4f} in "
            "27,740 steps (about 1.6 hours of wall time, mostly with the cores to itself). Either way, a head on the cached "
            "vectors adds under a minute of fitting.")
    return table


def _cpu_note(cpu_run: dict, card: dict) -> str:
    """What the CPU card-recipe run did, from its metrics.json: all 20 epochs, or where it stopped."""
    epochs, full = len(cpu_run["history"]), 20 * cpu_run["steps_per_epoch"]
    final = cpu_run["history"][-1]
    where = (f"ran all 20 epochs ({cpu_run['steps']:,} steps) and ended at {final['accuracy']:.4f} "
             f"(validation loss {final['validation_loss']:.4f}), where the card ends at {card[20][4]:.4f} "
             f"({card[20][3]:.4f})" if cpu_run["steps"] >= full else
             f"stopped at step {cpu_run['steps']:,} of {full:,}, just after epoch {epochs} "
             f"({final['accuracy']:.4f})")
    eps = cpu_run.get("examples_per_second")
    speed = (f"{eps:.1f} examples/s inside training steps ({cpu_run['train_seconds'] / 60:.0f} timed minutes; a "
             "checkpoint written before timing was kept across `--resume` counts only the steps after it)" if eps
             else "about 40 examples/s")
    best = max(cpu_run["history"], key=lambda r: r["accuracy"])
    return (f"Ours on the CPU: the same command with `--device cpu` on the 2-core AMD EPYC machine of 2026-11 (AVX-512 BF16, no AMX) {where}; its best epoch is "
            f"{int(round(best['epoch']))} ({best['accuracy']:.4f}). It trained at {speed} with the cores to "
            "itself (4.6 minutes per epoch, evaluation included). "
            + ("Epochs 1 to 10 ran in one go and were stopped at step 14,000; the rest continued from that "
               "checkpoint with `--resume`. " if cpu_run["steps"] > 14000 else "")
            + "How: `bench/results/card-cpu/README.md`.")


def _short(m: dict) -> str:
    return "end-to-end" if m["kind"] == "e2e" else m["name"].split(" ")[0]


def _mcnemar_line(report: dict) -> str:
    """``logistic 0.101, ...``: each head's McNemar p against the end-to-end model, all rows."""
    return ", ".join(f"{_short(m)} {m['all']['mcnemar_p_vs_e2e']:.3f}" for m in report["methods"]
                     if m["kind"] == "head" and m["all"].get("mcnemar_p_vs_e2e") is not None)


def _methods_line(report: dict, kinds=("e2e", "head")) -> str:
    """``end-to-end a / n, logistic a / n, ...`` (all / novel rows) from a ``compare`` results.json."""
    return ", ".join(f"{_short(m)} {m['all']['accuracy']:.4f} / {m['novel']['accuracy']:.4f}"
                     for m in report["methods"] if m["kind"] in kinds)


def _plot(card, ours, fast, cpu=None):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    out = RESULTS / "card" / "learning_curves.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(11, 4))
    series = [("card: tas-b, lr 1e-6", {e: (r[4], r[3]) for e, r in card.items()}, "o-"),
              ("ours: MiniLM, lr 1e-6 (H100)", {e: (r["accuracy"], r["validation_loss"]) for e, r in ours.items()}, "s-"),
              ("ours: MiniLM, lr 1e-6 (this CPU)", {e: (r["accuracy"], r["validation_loss"]) for e, r in (cpu or {}).items()}, "x--"),
              ("ours: MiniLM, lr 2e-5 (CPU)", {e: (r["accuracy"], r["validation_loss"]) for e, r in fast.items()}, "^-")]
    for label, points, style in series:
        if points:
            xs = sorted(points)
            acc.plot(xs, [points[x][0] for x in xs], style, label=label, markersize=4)
            loss.plot(xs, [points[x][1] for x in xs], style, label=label, markersize=4)
    acc.axhline(0.6205, color="grey", linestyle=":", label="majority class (our split)")
    acc.set(xlabel="epoch", ylabel="eval accuracy", title="Accuracy per epoch")
    loss.set(xlabel="epoch", ylabel="eval loss", title="Validation loss per epoch")
    for ax in (acc, loss):
        ax.grid(alpha=0.3)
        ax.set_xticks(range(0, 21, 2))
    acc.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    common.main(run)
