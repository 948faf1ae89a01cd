"""`compare` on a frozen encoder (no run folder): heads trained with `train-head --model minilm`, the
packaged MiniLM, the shipped sample tweets. No end-to-end row, McNemar against the best head, the
label curve, quoted references only when asked for, and the plots' helpers (names, axis, cells)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


from .conftest import REPO, invoke_cli, write_tweets

PNG = b"\x89PNG\r\n\x1a\n"
NO_E2E = "no end-to-end row: minilm is not a run folder written by `finetune`"


run = invoke_cli


@pytest.fixture(scope="module")
def frozen(tmp_path_factory, minilm_path):
    """A split of 150 sample rows (some eval rows repeat training rows) and two heads on the frozen MiniLM."""
    tmp = tmp_path_factory.mktemp("frozen")
    mp = pytest.MonkeyPatch()
    mp.setenv("TWEETHEADS_CACHE_DIR", str(tmp / "cache"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    run("split", write_tweets(tmp / "all.csv", 150, seed=5), "--out-dir", tmp / "split", "--seed", 3)
    for head in ("logistic", "knn"):
        run("train-head", "--head", head, "--model", "minilm", "--train", tmp / "split" / "train.csv",
            "--out", tmp / "heads" / head, "--quiet")
    yield tmp
    mp.undo()


@pytest.fixture(autouse=True)
def _module_cache(request, monkeypatch):
    """Tests on the module's split use its cache (conftest gives every test an empty one of its own)."""
    if "frozen" in request.fixturenames:
        monkeypatch.setenv("TWEETHEADS_CACHE_DIR", str(request.getfixturevalue("frozen") / "cache"))


def _compare(tmp: Path, *extra, ok=True):
    return run("compare", "--model", "minilm", "--test", tmp / "split" / "eval.csv", "--train",
               tmp / "split" / "train.csv", tmp / "heads" / "logistic", tmp / "heads" / "knn", *extra, ok=ok)


def test_compare_on_a_frozen_encoder_writes_report_plots_and_label_curve(frozen):
    out = _compare(frozen, "--train-sizes", "16,all", "--repeats", 1, "--report-dir", frozen / "rep").output
    rep = frozen / "rep"
    results = json.loads((rep / "results.json").read_text())
    report = (rep / "report.md").read_text()
    assert results["rows"] == 30 and 0 < results["novel_rows"] < 30 and results["run"] is None
    assert [(m["name"], m["kind"]) for m in results["methods"]] == [
        ("majority class", "baseline"), ("logistic", "head"), ("knn", "head")]
    # no end-to-end row, and one line saying why: in results.json, report.md and the printed summary
    assert results["no_end_to_end"] == NO_E2E
    assert f"- {NO_E2E}\n" in report and f"\n{NO_E2E}\n" in out
    # McNemar against the best head by all-rows accuracy; that head has no p of its own
    heads = [m for m in results["methods"] if m["kind"] == "head"]
    best = max(heads, key=lambda m: m["all"]["accuracy"])
    assert results["mcnemar_reference"]["name"] == best["name"] and results["mcnemar_reference"]["kind"] == "head"
    for method in results["methods"]:
        for subset in ("all", "novel"):
            m = method[subset]
            assert m["accuracy_ci95"][0] <= m["accuracy"] <= m["accuracy_ci95"][1]
            assert (m["mcnemar_p"] is None) == (method is best)
    assert f"| McNemar p vs {best['name']} |" in report and f"McNemar p vs {best['name']}" in out
    # the plots (no learning curve: no fine-tune) and the label curve
    assert results["plots"] == ["confusion_matrices.png", "accuracy.png", "calibration.png", "coverage.png",
                                "label_curve.png"]
    for png in results["plots"]:
        assert (rep / png).read_bytes()[:8] == PNG and f"![{png}]({png})" in report
    assert not (rep / "learning_curve.png").exists()
    curve = results["label_curve"]
    assert list(curve["heads"]) == ["logistic", "knn"] and curve["sizes"] == [16, 120]
    for method in heads:  # the whole-file point refits as train-head did: the head's own accuracy
        assert curve["heads"][method["name"]][-1]["all"]["accuracy"]["mean"] == pytest.approx(method["all"]["accuracy"])
    assert "## Accuracy per labelled tweet (all test rows)" in report
    # quoted references only when asked for: none here
    assert results["references"] == [] and curve["references"] == {}
    assert "0.7146" not in report and "reference card" not in report and "References:" not in report
    # names are not doubled
    assert "logistic (logistic)" not in report and "knn (knn)" not in out


def test_compare_draws_references_only_when_passed(frozen):
    out = _compare(frozen, "--reference", "card", "--reference", "SetFit paper=0.8", "--train-sizes", "all",
                   "--report-dir", frozen / "refs").output
    results = json.loads((frozen / "refs" / "results.json").read_text())
    assert [(r["name"], r["accuracy"]) for r in results["references"]] == [
        ("reference card (quoted)", 0.7146), ("SetFit paper", 0.8)]
    assert "GOP" in results["references"][0]["note"]  # the card's note says whose data its figure is on
    assert results["label_curve"]["references"] == {"reference card (quoted)": 0.7146, "SetFit paper": 0.8}
    report = (frozen / "refs" / "report.md").read_text()
    assert "| reference card (quoted) | 0.7146 |" in report and "| SetFit paper | 0.8000 |" in report
    assert "References: reference card (quoted) 0.7146; SetFit paper 0.8000." in report
    assert "| reference card (quoted) | 0.7146 |" in out


@pytest.mark.parametrize("bad", ["0.8", "x=1.5", "=0.7", "x=high"])
def test_a_malformed_reference_names_the_flag_and_the_form(frozen, bad):
    result = _compare(frozen, "--reference", bad, ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"--reference {bad!r}: expected NAME=ACCURACY with an accuracy from 0 to 1" in result.output


def test_compare_on_a_model_that_is_not_a_run_needs_train(frozen):
    result = run("compare", "--model", "minilm", "--test", frozen / "split" / "eval.csv", frozen / "heads" / "knn",
                 ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: --train is required: minilm is not a run folder written by `finetune`" in result.output
    assert "pass --train FILE" in result.output
    result = run("compare", "--model", "minilm", "--test", frozen / "split" / "eval.csv", ok=False)
    assert result.exit_code == 1 and "nothing to compare" in result.output and "HEAD_DIR" in result.output


def test_compare_refuses_a_head_of_another_model_as_score_does(frozen):
    run("train-head", "--head", "logistic", "--model", "minilm", "--pooling", "mean",
        "--train", frozen / "split" / "train.csv", "--out", frozen / "heads" / "mean", "--quiet")
    result = run("compare", "--model", "minilm", "--test", frozen / "split" / "eval.csv", "--train",
                 frozen / "split" / "train.csv", frozen / "heads" / "logistic", frozen / "heads" / "mean", ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "trained on embeddings from" in result.output and "--pooling mean" in result.output
    scored = run("score", "--model", "minilm", "--head", frozen / "heads" / "mean", frozen / "split" / "eval.csv",
                 "--output", frozen / "scored.csv", ok=False)
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error and error == [line for line in scored.output.splitlines() if line.startswith("Error:")]


def test_compare_takes_a_sentence_transformers_folder(frozen, minilm_path):
    """The packaged model's folder has the alias's weights: its heads are accepted, and the reason names the folder."""
    out = run("compare", "--model", minilm_path, "--test", frozen / "split" / "eval.csv", "--train",
              frozen / "split" / "train.csv", frozen / "heads" / "knn").output
    assert f"no end-to-end row: {minilm_path} is not a run folder written by `finetune`" in out
    assert "McNemar p vs knn" in out


def test_compare_loads_and_checks_heads_only_through_load_checked():
    """One place loads and checks a head (scoring.predictor.load_checked): compare keeps no copy of it."""
    source = (REPO / "comparison" / "compare.py").read_text()
    assert "load_checked(" in source
    for copy in ("load_head(", "check_fingerprint(", "EndToEndClassifier(", "check_vectors("):
        assert copy not in source, copy


def test_head_names_add_the_folder_only_when_two_heads_would_share_a_name(tmp_path):
    from comparison.compare import head_names
    from embed.errors import TweetheadsError

    def head(name):
        return SimpleNamespace(name=name)

    assert head_names([(tmp_path / "logistic", head("logistic")), (tmp_path / "knn", head("knn"))]) == [
        "logistic", "knn"]
    assert head_names([(tmp_path / "a" / "c1", head("logistic")), (tmp_path / "b" / "c10", head("logistic")),
                       (tmp_path / "knn", head("knn"))]) == ["logistic (c1)", "logistic (c10)", "knn"]
    same = head_names([(tmp_path / "a" / "h", head("knn")), (tmp_path / "b" / "h", head("knn"))])
    assert same == [f"knn ({tmp_path / 'a' / 'h'})", f"knn ({tmp_path / 'b' / 'h'})"]
    with pytest.raises(TweetheadsError, match="head folder given twice"):
        head_names([(tmp_path / "h", head("knn")), (tmp_path / "x" / ".." / "h", head("knn"))])


def test_accuracy_axis_is_zoomed_to_the_methods_intervals():
    from comparison.plots import accuracy_limits

    def row(kind, low, high):
        m = {"rows": 100, "accuracy": (low + high) / 2, "accuracy_ci95": [low, high]}
        return {"kind": kind, "all": m, "novel": {"rows": 0}}

    rows = [row("baseline", 0.30, 0.34), row("head", 0.70, 0.74), row("head", 0.71, 0.76)]
    low, high = accuracy_limits(rows)
    assert 0.6 < low < 0.70 and 0.76 < high < 0.85  # a point is at least 1/25 of the axis, not 1/100
    low, high = accuracy_limits(rows, [("card", 0.80)])
    assert high > 0.80  # a reference line stays on the plot
    assert accuracy_limits([row("head", 0.95, 1.0)])[1] == 1.0


def test_confusion_cells_show_the_row_rate_over_the_count():
    from comparison.plots import confusion_cells

    y = np.array(["a"] * 3 + ["b"] * 1200)
    predicted = np.array(["a", "a", "b"] + ["b"] * 1000 + ["a"] * 200)
    rates, cells = confusion_cells(y, predicted, ["a", "b", "c"])
    assert cells[0][:2] == ["0.67\n(2)", "0.33\n(1)"] and cells[1][:2] == ["0.17\n(200)", "0.83\n(1,000)"]
    assert cells[2] == ["0.00\n(0)"] * 3 and rates[2].tolist() == [0, 0, 0]  # a class with no true rows
    np.testing.assert_allclose(rates[:2].sum(axis=1), 1)


def test_parse_reference():
    from comparison.compare import CARD, Reference, parse_reference

    assert parse_reference("card") is CARD and CARD.accuracy == 0.7146
    assert parse_reference(" My model = 0.75 ") == Reference("My model", 0.75)
    assert parse_reference("a=b=0.5").name == "a=b"


def test_compare_reports_probability_metrics_for_every_method(frozen):
    """ECE, Brier, log-loss and selective accuracy on all and novel rows, checked against an independent computation."""
    from sklearn.metrics import log_loss

    from embed.data import load_texts
    from embed.encoder import Embedder
    from heads import load_head

    out = _compare(frozen, "--report-dir", frozen / "proba").output
    rep = frozen / "proba"
    results = json.loads((rep / "results.json").read_text())
    classes = results["classes"]
    test = load_texts(frozen / "split" / "eval.csv", "text", "label")
    y = np.asarray(test.labels)
    X = Embedder("minilm").transform(test.texts)
    for method in results["methods"]:
        for subset in ("all", "novel"):
            m = method[subset]
            assert {"ece", "brier", "log_loss", "mean_confidence", "selective_accuracy", "reliability"} <= set(m)
            assert list(m["selective_accuracy"]) == ["0.5", "0.8", "0.9", "1"]
            assert m["selective_accuracy"]["1"] == pytest.approx(m["accuracy"])
            assert sum(b["rows"] for b in m["reliability"]) == m["rows"] and len(m["reliability"]) == 15
    baseline = results["methods"][0]["all"]
    assert baseline["ece"] == pytest.approx(abs(baseline["mean_confidence"] - baseline["accuracy"]))  # one bin
    for method in results["methods"][1:]:  # the heads: recompute from their own predict_proba
        head = load_head(frozen / "heads" / method["name"])
        proba = head.predict_proba(X)
        assert [str(c) for c in head.classes_] == classes
        top, correct = proba.max(axis=1), head.predict(X) == y
        edges = np.linspace(0, 1, 16)
        ece = sum(np.mean(inside) * abs(correct[inside].mean() - top[inside].mean())
                  for inside in ((top > lo) & (top <= hi) | ((lo == 0) & (top == 0)) for lo, hi in zip(edges, edges[1:]))
                  if inside.any())
        onehot = (y[:, None] == np.asarray(classes)[None, :]).astype(float)
        m = method["all"]
        assert m["ece"] == pytest.approx(ece) and m["log_loss"] == pytest.approx(log_loss(y, proba, labels=classes))
        assert m["brier"] == pytest.approx(np.mean(((proba - onehot) ** 2).sum(axis=1)))
        keep = np.argsort(-top, kind="stable")[:15]
        assert m["selective_accuracy"]["0.5"] == pytest.approx(correct[keep].mean())
    report = (rep / "report.md").read_text()
    assert "## Probabilities: calibration and selective prediction" in report
    assert "15 equal-width bins of the top-class probability" in report and "0 best, 2 worst" in report
    assert "| method | ECE | Brier | log-loss | mean top p | acc @ 50% coverage |" in report
    assert "| majority class (class shares) |" in report and "rows, probabilities" in out
    for png in ("calibration.png", "coverage.png"):
        assert (rep / png).read_bytes()[:8] == PNG and f"![{png}]({png})" in report


def test_probability_metrics_on_a_hand_worked_example():
    from comparison.probability import brier, ece, reliability, selective_accuracy

    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.5, 0.5]])
    correct = np.array([True, False, True, True])
    # bins (13/15, 14/15]: 2 rows, conf 0.9, acc 0.5; (8/15, 9/15]: conf 0.6, acc 1; (7/15, 8/15]: conf 0.5, acc 1
    assert ece(proba, correct) == pytest.approx(0.5 * 0.4 + 0.25 * 0.4 + 0.25 * 0.5)
    assert [b["rows"] for b in reliability(proba, correct) if b["rows"]] == [1, 1, 2]
    assert brier(proba, np.array(["a", "b", "a", "a"]), ["a", "b"]) == pytest.approx(
        (0.02 + 1.62 + 0.32 + 0.5) / 4)
    assert selective_accuracy(proba, correct) == {"0.5": 0.5, "0.8": 0.75, "0.9": 0.75, "1": 0.75}  # ceil(3.2) = 4 rows
