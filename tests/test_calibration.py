"""Temperature calibration that travels with a head: fitted on the selection holdout, saved as numbers in
head.json, applied by predict_proba everywhere, never changing a prediction.

Synthetic arrays for the estimator-level checks; the packaged MiniLM and the shipped sample tweets for
train-head and score; the GOP tweets (skipped where absent) for a real head on real data.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow.csv as pacsv
import pytest
from scipy.special import softmax
from sklearn.datasets import make_blobs

from heads import HeadError, get_head, head_names, load_head

from .conftest import invoke_cli as run
from .conftest import write_tweets

FINGERPRINT = "c" * 64
MODEL = {"model": "minilm", "pooling": "cls"}
LABELS = np.array(["Negative", "Neutral", "Positive"])
FAST = {"logistic": {"Cs": (0.01, 0.1, 1.0)}, "lightgbm": {"n_estimators": 200, "early_stopping_rounds": 10,
                                                          "n_threads": 1}, "knn": {"n_threads": 1}}


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=1600, n_features=16, centers=3, cluster_std=6.0, random_state=1)
    return X.astype(np.float32)[:1200], LABELS[y[:1200]], X.astype(np.float32)[1200:], LABELS[y[1200:]]


@pytest.fixture(scope="module", params=head_names())
def calibrated(request, blobs):
    from comparison.train_head import select_and_fit

    X, y, _, _ = blobs
    return select_and_fit(get_head(request.param, **FAST[request.param]), X, y, calibrate="temperature")


def test_temperature_never_changes_a_prediction(calibrated, blobs, tmp_path):
    _, _, X_test, _ = blobs
    t = calibrated.calibration_
    assert t is not None and t.rows == 120 and t.temperature != 1.0  # fitted on the 10% selection holdout
    raw, proba = calibrated.uncalibrated_proba(X_test), calibrated.predict_proba(X_test)
    assert not np.allclose(raw, proba)  # it did something
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(calibrated.predict(X_test), calibrated.classes_[raw.argmax(axis=1)])
    uncalibrated = load_head(calibrated.save(tmp_path / "h", fingerprint=FINGERPRINT, model=MODEL))
    uncalibrated.set_calibration(None)
    assert np.array_equal(uncalibrated.predict(X_test), calibrated.predict(X_test))


def test_saved_head_reproduces_its_calibrated_probabilities(calibrated, blobs, tmp_path):
    _, _, X_test, _ = blobs
    calibrated.save(tmp_path / "h", fingerprint=FINGERPRINT, model=MODEL)
    config = json.loads((tmp_path / "h" / "head.json").read_text())
    assert config["calibration"]["method"] == "temperature"
    assert config["calibration"]["temperature"] == calibrated.calibration_.temperature
    assert not any(p.suffix in (".pkl", ".joblib") for p in (tmp_path / "h").iterdir())
    loaded = load_head(tmp_path / "h")
    assert loaded.calibration_ == calibrated.calibration_
    assert np.array_equal(loaded.predict_proba(X_test), calibrated.predict_proba(X_test))


def test_head_json_without_calibration_loads_uncalibrated_and_a_bad_one_is_refused(calibrated, blobs, tmp_path):
    _, _, X_test, _ = blobs
    calibrated.save(tmp_path / "h", fingerprint=FINGERPRINT, model=MODEL)
    config = json.loads((tmp_path / "h" / "head.json").read_text())
    old = {k: v for k, v in config.items() if k != "calibration"}  # as written before calibration existed
    (tmp_path / "h" / "head.json").write_text(json.dumps(old))
    loaded = load_head(tmp_path / "h")
    assert loaded.calibration_ is None
    assert np.array_equal(loaded.predict_proba(X_test), calibrated.uncalibrated_proba(X_test))
    for bad in ({"method": "temperature", "temperature": -1}, {"method": "platt", "temperature": 1.0},
                {"method": "temperature", "temperature": float("nan")}, "1.5"):
        (tmp_path / "h" / "head.json").write_text(json.dumps({**config, "calibration": bad}))
        with pytest.raises(HeadError, match="field 'calibration' should be null or"):
            load_head(tmp_path / "h")


def test_fit_temperature_finds_the_temperature_that_made_probabilities_over_confident():
    from heads.calibration import fit_temperature

    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(4000, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(logits, axis=1)])  # labels drawn from the true probabilities
    fitted = fit_temperature(softmax(2.0 * logits, axis=1), y)  # twice as sharp as the truth
    assert fitted.temperature == pytest.approx(2.0, rel=0.08) and fitted.smoothing == 0.0
    assert fitted.nll_after < fitted.nll_before
    assert fit_temperature(softmax(logits[:49], axis=1), y[:49]).temperature == 1.0  # too few rows: no fit


def test_knn_vote_shares_of_zero_get_smoothed_and_a_finite_log_loss():
    from sklearn.metrics import log_loss

    from comparison.train_head import select_and_fit

    X, y = make_blobs(n_samples=1600, n_features=16, centers=3, cluster_std=14.0, random_state=1)
    X, y, X_test, y_test = X[:1200], LABELS[y[:1200]], X[1200:], LABELS[y[1200:]]  # overlapping: certain and wrong
    head = select_and_fit(get_head("knn", k=3, n_threads=1), X, y, calibrate="temperature")
    raw, proba = head.uncalibrated_proba(X_test), head.predict_proba(X_test)
    assert (raw == 0).any() and head.calibration_.smoothing > 0 and (proba > 0).all()
    assert log_loss(y_test, proba, labels=LABELS) < log_loss(y_test, raw, labels=LABELS)


def test_calibrate_refuses_unknown_labels_and_methods(calibrated, blobs):
    X, _, _, _ = blobs
    with pytest.raises(HeadError, match="does not know"):
        calibrated.calibrate(X[:60], np.array(["Elated"] * 60))
    with pytest.raises(HeadError, match="must be one of temperature, none"):
        calibrated.calibrate(X[:60], LABELS[np.zeros(60, dtype=int)], "platt")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two logistic heads by train-head on 600 sample rows (60 held out): --calibrate temperature and none."""
    tmp = tmp_path_factory.mktemp("calibrated")
    mp = pytest.MonkeyPatch()
    mp.setenv("TWEETHEADS_CACHE_DIR", str(tmp / "cache"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    train = write_tweets(tmp / "train.csv", 600, seed=2)
    out = {}
    for method in ("temperature", "none"):
        out[method] = run("train-head", "--head", "logistic", "--model", "minilm", "--train", train, "--out",
                          tmp / method, "--calibrate", method).output
    yield tmp, out
    mp.undo()


def test_train_head_calibrates_by_default_and_says_so(trained):
    tmp, out = trained
    config = json.loads((tmp / "temperature" / "head.json").read_text())
    assert config["calibration"]["rows"] == 60 and config["calibration"]["temperature"] > 0
    assert f"temperature {config['calibration']['temperature']:.3f}" in out["temperature"]
    assert "fitted on 60 held-out rows" in out["temperature"]
    assert json.loads((tmp / "none" / "head.json").read_text())["calibration"] is None
    assert "uncalibrated (--calibrate none)" in out["none"]
    result = run("train-head", "--help")
    assert "--calibrate [temperature|none]" in result.output and "labels and accuracy" in result.output


def test_score_writes_calibrated_probabilities_and_the_same_labels(trained, monkeypatch):
    from embed.encoder import Embedder

    tmp, _ = trained
    monkeypatch.setenv("TWEETHEADS_CACHE_DIR", str(tmp / "cache"))
    texts = write_tweets(tmp / "in.csv", 120, seed=9)
    tables = {}
    for method in ("temperature", "none"):
        run("score", texts, "--model", "minilm", "--head", tmp / method, "--output", tmp / f"{method}.csv", "--quiet")
        tables[method] = pacsv.read_csv(tmp / f"{method}.csv").to_pydict()
    assert tables["temperature"]["pred_label"] == tables["none"]["pred_label"]
    head = load_head(tmp / "temperature")
    X = Embedder("minilm").transform(tables["none"]["text"])
    written = np.column_stack([tables["temperature"][f"pred_proba_{c}"] for c in head.classes_])
    np.testing.assert_allclose(written, head.predict_proba(X), atol=1e-6)
    assert not np.allclose(written, head.uncalibrated_proba(X), atol=1e-3)


def test_a_real_head_on_gop_tweets_keeps_its_predictions_and_reloads_exactly(gop_csv, tmp_path):
    """700 GOP tweets (first rows), frozen MiniLM: every head, calibrated on its holdout, saved and reloaded."""
    from comparison.train_head import select_and_fit
    from embed.data import load_texts
    from embed.encoder import Embedder

    table = load_texts(gop_csv, "text", "sentiment", max_rows=700)
    texts, labels = table.texts, np.asarray(table.labels)
    X = Embedder("minilm").transform(texts)
    for name in head_names():
        head = select_and_fit(get_head(name, **FAST[name]), X[:600], labels[:600], calibrate="temperature")
        assert head.calibration_.rows == 60
        assert np.array_equal(head.predict(X[600:]), head.classes_[head.uncalibrated_proba(X[600:]).argmax(axis=1)])
        loaded = load_head(head.save(tmp_path / name, fingerprint=FINGERPRINT, model=MODEL))
        assert np.array_equal(loaded.predict_proba(X[600:]), head.predict_proba(X[600:]))
