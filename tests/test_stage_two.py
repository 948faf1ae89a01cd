"""One real end-to-end run on the packaged MiniLM: short fine-tune, three heads, compare, report files."""
from __future__ import annotations

import json

import numpy as np
import pytest


from .conftest import invoke_cli, write_tweets

pytestmark = pytest.mark.slow


run = invoke_cli


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, minilm_path):
    """The run and heads, in one cache. The CPU's bf16 check is forced off for the module: these tests
    compare figures computed twice (the fine-tune's eval against the end-to-end row on cached vectors,
    a refit against train-head's head), which fp32 makes equal on every CPU; bf16 moves a vector by up
    to ~1e-3 with the batch it was encoded in. It is also the fallback path, run end to end."""
    from embed import encoder as encoder_module

    tmp = tmp_path_factory.mktemp("stage2")
    mp = pytest.MonkeyPatch()
    mp.setenv("TWEETHEADS_CACHE_DIR", str(tmp / "cache"))
    mp.setattr(encoder_module, "cpu_has_bf16", lambda: False)
    data = write_tweets(tmp / "all.csv", 150, seed=5)  # 120 sample texts + 30 repeats: some eval rows not novel
    run("split", data, "--out-dir", tmp / "split", "--seed", 3)
    run("finetune", "--model", "minilm", "--train", tmp / "split" / "train.csv", "--eval", tmp / "split" / "eval.csv",
        "--out", tmp / "run", "--max-steps", 10, "--lr", 5e-5, "--max-length", 48)
    outputs = {}
    for head in ("logistic", "lightgbm", "knn"):
        outputs[head] = run("train-head", "--head", head, "--model", tmp / "run", "--train", tmp / "split" / "train.csv",
                            "--eval", tmp / "split" / "eval.csv", "--out", tmp / "heads" / head,
                            *(["--param", "n_threads=1"] if head == "lightgbm" else [])).output
    yield tmp, outputs
    mp.undo()


@pytest.fixture(autouse=True)
def _module_cache(request, monkeypatch):
    """Tests on the workdir use its cache (conftest gives every test an empty one of its own)."""
    if "workdir" in request.fixturenames:
        monkeypatch.setenv("TWEETHEADS_CACHE_DIR", str(request.getfixturevalue("workdir")[0] / "cache"))


def test_train_head_reports_and_reuses_the_cache(workdir):
    tmp, outputs = workdir
    assert "150 texts encoded" not in outputs["lightgbm"]
    assert "embedded with 0 texts encoded" in outputs["lightgbm"]  # the second head encodes nothing
    assert "embedded with 0 texts encoded" in outputs["knn"]
    for head, out in outputs.items():
        assert f"{head}: fit" in out and "accuracy" in out and "macro-F1" in out and "predictions/s" in out
        assert json.loads((tmp / "heads" / head / "head.json").read_text())["head"] == head


def test_compare_writes_report_table_and_plots(workdir):
    tmp, _ = workdir
    out = run("compare", "--model", tmp / "run", "--test", tmp / "split" / "eval.csv",
              tmp / "heads" / "logistic", tmp / "heads" / "lightgbm", tmp / "heads" / "knn",
              "--reference", "card", "--report-dir", tmp / "report").output
    results = json.loads((tmp / "report" / "results.json").read_text())
    assert results["rows"] == 30 and 0 < results["novel_rows"] < 30
    kinds = [m["kind"] for m in results["methods"]]
    assert kinds == ["baseline", "e2e", "head", "head", "head"] and results["no_end_to_end"] is None
    assert [m["name"] for m in results["methods"]][2:] == ["logistic", "lightgbm", "knn"]  # not "knn (knn)"
    assert results["mcnemar_reference"]["kind"] == "e2e"  # a run: McNemar against its end-to-end model
    for method in results["methods"]:
        for subset in ("all", "novel"):
            m = method[subset]
            assert 0 <= m["accuracy"] <= 1 and m["accuracy_ci95"][0] <= m["accuracy"] <= m["accuracy_ci95"][1]
            assert set(m["f1_per_class"]) == {"Negative", "Neutral", "Positive"}
        if method["kind"] == "head":
            assert method["all"]["mcnemar_p"] is not None and method["fit_seconds"] > 0
    assert results["methods"][1]["all"]["mcnemar_p"] is None
    # the end-to-end row on cached CLS vectors equals the fine-tune's own final eval accuracy
    metrics = json.loads((tmp / "run" / "metrics.json").read_text())
    assert results["methods"][1]["all"]["accuracy"] == pytest.approx(metrics["history"][-1]["accuracy"])
    report = (tmp / "report" / "report.md").read_text()
    assert "| reference card (quoted) | 0.7146 |" in report and "## Novel test rows" in report
    assert "McNemar p vs e2e" in report and "| logistic |" in report and "logistic (logistic)" not in report
    assert [r["name"] for r in results["references"]] == ["reference card (quoted)"]  # asked for: drawn
    for png in ("confusion_matrices.png", "accuracy.png", "learning_curve.png"):
        data = (tmp / "report" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert len(metrics["training_log"]) == 10  # a 10-step run: a training-loss point per step on the curve
    assert "30 test rows" in out and "novel rows:" in out


def test_compare_refuses_a_head_from_another_model(workdir):
    tmp, _ = workdir
    run("train-head", "--head", "logistic", "--model", tmp / "run", "--pooling", "mean",
        "--train", tmp / "split" / "train.csv", "--out", tmp / "heads" / "mean")
    result = run("compare", "--model", tmp / "run", "--test", tmp / "split" / "eval.csv", tmp / "heads" / "mean",
                 ok=False)
    assert result.exit_code == 1 and "trained on embeddings from" in result.output and "Traceback" not in result.output


def test_compare_refuses_vectors_the_end_to_end_classifier_was_not_trained_on(workdir):
    tmp, _ = workdir
    result = run("compare", "--model", tmp / "run", "--test", tmp / "split" / "eval.csv", "--pooling", "mean",
                 ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "fine-tuned on pooling 'cls' but the vectors given it have pooling 'mean'" in result.output
    assert "drop --pooling" in result.output


def test_heads_work_in_a_pipeline_with_the_embedder(workdir):
    from sklearn.pipeline import make_pipeline

    from embed.data import load_texts
    from embed.encoder import Embedder
    from heads import get_head

    tmp, _ = workdir
    train = load_texts(tmp / "split" / "train.csv", label_col="label")
    evals = load_texts(tmp / "split" / "eval.csv", label_col="label")
    pipe = make_pipeline(Embedder(str(tmp / "run")), get_head("knn", k=5)).fit(train.texts, train.labels)
    # the pipeline is exactly embed-then-fit: same predictions and probabilities as the two steps by hand
    embedder = Embedder(str(tmp / "run"))
    by_hand = get_head("knn", k=5).fit(embedder.transform(train.texts), train.labels)
    X_eval = embedder.transform(evals.texts)
    assert pipe.predict(evals.texts).tolist() == by_hand.predict(X_eval).tolist()
    np.testing.assert_allclose(pipe.predict_proba(evals.texts), by_hand.predict_proba(X_eval))
    assert pipe.score(evals.texts, evals.labels) == pytest.approx(
        np.mean(by_hand.predict(X_eval) == np.asarray(evals.labels)))


def test_approximate_knn_reports_its_recall(workdir):
    tmp, _ = workdir
    out = run("train-head", "--head", "knn", "--param", "index=hnsw", "--model", tmp / "run",
              "--train", tmp / "split" / "train.csv", "--eval", tmp / "split" / "eval.csv",
              "--out", tmp / "heads" / "hnsw").output
    recall = float(out.split("approximate index recall vs exact: ")[1].split()[0])
    assert 0.5 < recall <= 1.0


def test_compare_train_sizes_refits_every_head_on_samples_without_encoding_again(workdir):
    from embed.encoder import Embedder
    from comparison.compare import CompareConfig, compare

    tmp, _ = workdir
    heads = [tmp / "heads" / h for h in ("logistic", "lightgbm", "knn")]
    out = run("compare", "--model", tmp / "run", "--test", tmp / "split" / "eval.csv", *heads,
              "--train-sizes", "9,30,all", "--repeats", 2, "--report-dir", tmp / "curve").output
    assert "accuracy per labelled tweet" in out
    results = json.loads((tmp / "curve" / "results.json").read_text())
    curve = results["label_curve"]
    assert curve["sizes"] == [9, 30, 120] and curve["train_rows"] == 120
    assert list(curve["heads"]) == ["logistic", "lightgbm", "knn"]
    for points in curve["heads"].values():
        assert [len(p["runs"]) for p in points] == [2, 2, 1]  # the whole file once: every draw is the same
        assert [r["seed"] for r in points[0]["runs"]] == [42, 43]
        for point in points:
            acc = point["all"]["accuracy"]
            assert acc["min"] <= acc["mean"] <= acc["max"]
            assert set(point["novel"]) == {"accuracy", "macro_f1", "macro_recall"}
    # the whole-file point refits exactly as train-head did (same selection): same accuracy as the head
    for method in results["methods"][2:]:
        whole = curve["heads"][method["name"]][-1]["all"]["accuracy"]["mean"]
        assert whole == pytest.approx(method["all"]["accuracy"]), method["name"]
    # a run draws its end-to-end model as a reference line; the card only when --reference card is given
    assert curve["references"] == {"end-to-end, all training rows": results["methods"][1]["all"]["accuracy"]}
    assert (tmp / "curve" / "label_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Accuracy per labelled tweet (all test rows)" in (tmp / "curve" / "report.md").read_text()

    class Counting(Embedder):  # records what each embed call had to encode
        def embed(self, texts):
            vectors, stats = super().embed(texts)
            self.encoded_.append(stats.encoded)
            return vectors, stats

    counting = Counting(str(tmp / "run"))
    counting.encoded_ = []
    compare(counting, tmp / "split" / "eval.csv", heads[:1],
            config=CompareConfig(train_sizes=(9, "all"), repeats=1))
    assert counting.encoded_ == [0, 0]  # test and train vectors both come from the cache


def test_label_curve_samples_are_stratified_and_seeded():
    from embed.errors import TweetheadsError
    from comparison.label_curve import parse_sizes, sample_rows

    y = np.array(["a"] * 600 + ["b"] * 300 + ["c"] * 100)
    rows = sample_rows(y, 100, seed=1)
    assert len(rows) == 100 and len(set(rows.tolist())) == 100
    assert sorted(np.unique(y[rows], return_counts=True)[1].tolist()) == [10, 30, 60]
    assert np.array_equal(rows, sample_rows(y, 100, seed=1)) and not np.array_equal(rows, sample_rows(y, 100, seed=2))
    assert np.array_equal(sample_rows(y, 5000, seed=1), np.arange(1000))
    with pytest.raises(TweetheadsError, match="at least 2 rows of each of the 3 labels"):
        sample_rows(y, 5, seed=1)
    assert parse_sizes("32, 128,all,32") == (32, 128, "all")
    with pytest.raises(TweetheadsError, match="'-4' is not a positive whole number"):
        parse_sizes("32,-4")
