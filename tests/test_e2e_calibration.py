"""A fine-tuned run's end-to-end probabilities: the temperature ``finetune`` fits on the eval rows, kept in
``tweetheads_run.json``, applied after reload, cross-fitted by ``compare`` on the file it was fitted on.

One tiny fine-tune (the packaged MiniLM, 2 steps) with 64 eval rows, at least ``MIN_ROWS``, so a real
temperature is fitted."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from embed.errors import ModelError, TweetheadsError
from embed.finetune import FinetuneConfig, fine_tune
from embed.runs import RUN_MARKER, EndToEndClassifier
from fileio import sha256_file

from .conftest import invoke_cli, write_tweets

QUICK = dict(model="minilm", lr=1e-4, train_batch_size=8, eval_batch_size=32, max_steps=2, max_length=32,
             progress=False, precision="fp32")


@pytest.fixture(scope="module")
def tmp(tmp_path_factory, minilm_path):
    tmp = tmp_path_factory.mktemp("e2ecal")
    train = write_tweets(tmp / "train.csv", 24, seed=1)
    evals = write_tweets(tmp / "eval.csv", 64, seed=2)
    fine_tune(train, tmp / "run", FinetuneConfig(**QUICK), eval_path=evals, cache_dir=tmp / "cache")
    return tmp


def _eval_rows(tmp, run):
    """The eval file's vectors from the run (fp32, as trained) and its labels as class indexes."""
    from embed.encoder import Embedder

    with open(tmp / "eval.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    X, _ = Embedder(str(run), max_length=32, precision="fp32", cache_dir=None).embed([r["text"] for r in rows])
    classes = list(EndToEndClassifier(run).classes_)
    return X, np.array([classes.index(r["label"]) for r in rows])


def _nll(proba, codes) -> float:
    return float(-np.mean(np.log(proba[np.arange(len(codes)), codes])))


def test_the_saved_temperature_reproduces_the_fitted_probabilities_after_reload(tmp):
    from heads.calibration import Temperature

    run = tmp / "run"
    entry = json.loads((run / RUN_MARKER).read_text())["calibration"]
    assert entry["method"] == "temperature" and entry["rows"] == 64 and "why" not in entry
    assert entry["fitted_on"] == {"path": str(tmp / "eval.csv"), "sha256": sha256_file(tmp / "eval.csv"), "rows": 64}
    assert (entry["temperature"], entry["smoothing"]) != (1.0, 0.0) and entry["nll_after"] < entry["nll_before"]
    e2e = EndToEndClassifier(run)
    X, codes = _eval_rows(tmp, run)
    proba, own = e2e.predict_proba(X), e2e.uncalibrated_proba(X)
    np.testing.assert_allclose(proba, Temperature(entry["temperature"], entry["smoothing"]).apply(own), atol=1e-12)
    # the reloaded model's probabilities of the eval rows are those the fit scored: its log-loss before and after
    assert _nll(own, codes) == pytest.approx(entry["nll_before"], abs=1e-5)
    assert _nll(proba, codes) == pytest.approx(entry["nll_after"], abs=1e-5)
    assert np.abs(proba - own).max() > 1e-3
    # the card says what the probabilities are and what T was fitted on
    card = (run / "README.md").read_text()
    assert f"T = {entry['temperature']:.3f}" in card
    assert f"(`eval.csv`, 64 rows, sha256 `{entry['fitted_on']['sha256']}`" in card


def test_the_temperature_changes_no_prediction(tmp):
    e2e = EndToEndClassifier(tmp / "run")
    X, _ = _eval_rows(tmp, tmp / "run")
    X = np.concatenate([X, np.random.default_rng(0).normal(size=(200, X.shape[1])).astype(np.float32)])
    assert e2e.calibration_ is not None
    np.testing.assert_array_equal(e2e.predict_proba(X).argmax(1), e2e.uncalibrated_proba(X).argmax(1))
    np.testing.assert_array_equal(e2e.predict(X), e2e.classes_[e2e.uncalibrated_proba(X).argmax(1)])


def test_a_run_without_the_entry_loads_as_before_and_a_damaged_one_is_refused(tmp):
    old = tmp / "old-run"
    shutil.copytree(tmp / "run", old, ignore=shutil.ignore_patterns("checkpoint"))
    info = json.loads((old / RUN_MARKER).read_text())
    del info["calibration"]  # a run written before finetune calibrated (the entry is not among the digests)
    (old / RUN_MARKER).write_text(json.dumps(info))
    e2e = EndToEndClassifier(old)
    X, _ = _eval_rows(tmp, old)
    assert e2e.calibration_ is None
    np.testing.assert_array_equal(e2e.predict_proba(X), e2e.uncalibrated_proba(X))
    assert e2e.predict_proba(X).dtype == np.float32  # the softmax as it always was
    (old / RUN_MARKER).write_text(json.dumps({**info, "calibration": {"method": "temperature", "temperature": -1}}))
    with pytest.raises(ModelError, match="field 'calibration' should be"):
        EndToEndClassifier(old)


def test_compare_cross_fits_the_temperature_on_the_file_it_was_fitted_on(tmp):
    from comparison.compare import compare
    from comparison.probability import FOLDS, cross_fitted, ece
    from comparison.report import summary
    from embed.encoder import Embedder

    run = tmp / "run"
    embedder = Embedder(str(run), max_length=32, precision="fp32", cache_dir=tmp / "cache")
    e2e = EndToEndClassifier(run)
    for test, applied in ((tmp / "eval.csv", "cross-fitted"), (tmp / "train.csv", "the run's temperature")):
        results = compare(embedder, test, [])
        row = next(m for m in results["methods"] if m["kind"] == "e2e")
        assert results["e2e_calibration"]["applied"] == applied
        with open(test, newline="") as handle:
            labels = [r["label"] for r in csv.DictReader(handle)]
        codes = np.array([list(e2e.classes_).index(label) for label in labels])
        own = e2e.uncalibrated_proba(embedder.embed(_texts(test))[0])
        correct = own.argmax(1) == codes
        assert row["all"]["accuracy"] == pytest.approx(correct.mean())  # the same with any temperature
        expected = cross_fitted(own, codes, FOLDS, 42)[0] if applied == "cross-fitted" else e2e.calibration_.apply(own)
        assert row["all"]["ece"] == pytest.approx(ece(expected, correct), abs=1e-9)
        if applied == "cross-fitted":
            assert len(results["e2e_calibration"]["fold_temperatures"]) == FOLDS
            assert row["all"]["ece"] != pytest.approx(ece(e2e.calibration_.apply(own), correct), abs=1e-9)
            assert any("cross-fitted over the test rows (5 folds" in line for line in summary(results))
        else:
            assert not any("cross-fitted" in line for line in summary(results))


def _texts(path) -> list[str]:
    with open(path, newline="") as handle:
        return [r["text"] for r in csv.DictReader(handle)]


def test_a_finished_run_resumed_fits_the_same_temperature_and_calibrate_none_keeps_the_softmax(tmp, monkeypatch):
    again = tmp / "resumed"
    shutil.copytree(tmp / "run", again)
    fitted = json.loads((tmp / "run" / RUN_MARKER).read_text())["calibration"]
    # no step left to train, so the final model's eval probabilities are computed again for the fit
    fine_tune(tmp / "train.csv", again, FinetuneConfig(**QUICK), eval_path=tmp / "eval.csv", resume=True,
              cache_dir=tmp / "cache")
    refit = json.loads((again / RUN_MARKER).read_text())["calibration"]
    assert refit["temperature"] == pytest.approx(fitted["temperature"], rel=1e-3)
    assert refit["nll_after"] == pytest.approx(fitted["nll_after"], abs=1e-5)
    # --calibrate none, from the command line: no temperature, and the run says why
    invoke_cli("finetune", "--model", "minilm", "--train", tmp / "train.csv", "--eval", tmp / "eval.csv", "--out",
               again, "--max-steps", 2, "--max-length", 32, "--precision", "fp32", "--calibrate", "none", "--resume",
               "--cache-dir", tmp / "cache", "-q")
    entry = json.loads((again / RUN_MARKER).read_text())["calibration"]
    assert entry == {"method": "none", "why": "--calibrate none: the probabilities are the classifier's softmax"}
    assert EndToEndClassifier(again).calibration_ is None
    with pytest.raises(TweetheadsError, match="calibrate 'platt': expected one of temperature, none"):
        FinetuneConfig(calibrate="platt")


def test_a_new_temperature_changes_the_classifier_id_that_score_resumes_by(tmp):
    from embed.encoder import Embedder
    from scoring.predictor import _end_to_end

    other = tmp / "id-run"
    shutil.copytree(tmp / "run", other, ignore=shutil.ignore_patterns("checkpoint"))
    before = _end_to_end(Embedder(str(other), cache_dir=tmp / "cache"))
    info = json.loads((other / RUN_MARKER).read_text())
    info["calibration"] = {**info["calibration"], "temperature": info["calibration"]["temperature"] * 1.5}
    (other / RUN_MARKER).write_text(json.dumps(info))
    after = _end_to_end(Embedder(str(other), cache_dir=tmp / "cache"))
    assert after.digest != before.digest  # a resumed score refuses to mix the two temperatures' rows
