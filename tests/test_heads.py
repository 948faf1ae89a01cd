"""Contract tests for every registered head, plus scikit-learn's own estimator checks.

The contract tests are parametrized over `HEADS`, so a new head file is covered as soon as
it registers itself. Data are seeded synthetic arrays; nothing here loads an embedding model.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_blobs, make_classification
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from heads import HEADS, HeadError, KNNHead, LightGBMHead, LogisticHead, get_head, head_names, load_head

LABELS = np.array(["Negative", "Neutral", "Positive"])
FINGERPRINT = "a1b2c3d4e5f6" + "0" * 52
MODEL = {"model": "minilm", "pooling": "cls"}
# Small budgets keep the suite fast; a head missing here runs with its defaults.
FAST = {
    "logistic": {"Cs": (0.01, 0.1, 1.0)},
    "lightgbm": {"n_estimators": 200, "default_rounds": 60, "early_stopping_rounds": 10,
                 "n_threads": 1},
    "knn": {"n_threads": 1},
}


def make_head(name: str, **params):
    return get_head(name, **{**FAST.get(name, {}), **params})


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=400, n_features=32, centers=3, cluster_std=4.0,
                      random_state=0)
    X, y = X.astype(np.float32), LABELS[y]
    return X[:300], y[:300], X[300:], y[300:]


@pytest.fixture(scope="module", params=head_names())
def fitted(request, blobs):
    X, y, _, _ = blobs
    return make_head(request.param).fit(X, y)


def test_fit_predict_contract(fitted, blobs):
    _, _, X_test, y_test = blobs
    proba = fitted.predict_proba(X_test)
    assert proba.shape == (len(X_test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert (proba >= 0).all()
    predicted = fitted.predict(X_test)
    assert predicted.shape == (len(X_test),)
    assert list(fitted.classes_) == list(LABELS)
    assert np.mean(predicted == y_test) > 0.9  # blobs are separable: chance is 0.33
    assert fitted.n_features_in_ == 32


def test_save_load_round_trip(fitted, blobs, tmp_path):
    _, _, X_test, _ = blobs
    fitted.save(tmp_path, fingerprint=FINGERPRINT, model=MODEL)
    config = json.loads((tmp_path / "head.json").read_text())
    assert config["format"] == "tweetheads-head/1"
    assert config["head"] == fitted.name
    assert config["classes"] == list(LABELS)
    assert config["n_features"] == 32 and config["fingerprint"] == FINGERPRINT
    assert config["model"] == MODEL
    for name, digest in config["files"].items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
    loaded = load_head(tmp_path)
    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    assert np.array_equal(loaded.predict_proba(X_test), fitted.predict_proba(X_test))
    assert np.array_equal(loaded.predict(X_test), fitted.predict(X_test))
    loaded.check_fingerprint(FINGERPRINT, MODEL)  # same model: no error


def test_check_fingerprint_names_both_models(fitted):
    with pytest.raises(HeadError, match="set_model"):
        make_head(fitted.name).fit(*_tiny()).check_fingerprint(FINGERPRINT, MODEL)
    fitted.set_model(FINGERPRINT, MODEL)
    with pytest.raises(HeadError) as error:
        fitted.check_fingerprint("ffff" * 16, {"model": "mpnet"})
    assert "minilm" in str(error.value) and "mpnet" in str(error.value)
    assert FINGERPRINT[:12] in str(error.value) and "ffffffffffff" in str(error.value)


def test_save_needs_the_embedding_model(tmp_path):
    head = make_head("logistic").fit(*_tiny())
    with pytest.raises(HeadError, match="fingerprint"):
        head.save(tmp_path)


@pytest.mark.parametrize("name", head_names())
def test_unfitted_head_says_call_fit(name, blobs):
    with pytest.raises(NotFittedError, match="fit"):
        make_head(name).predict(blobs[2])


def test_feature_count_mismatch_is_explained(fitted, blobs):
    with pytest.raises(HeadError, match="X has 16 features, but .* expecting 32"):
        fitted.predict(blobs[2][:, :16])


@pytest.mark.parametrize("name", head_names())
def test_eval_set_drives_selection(name):
    """Scoring on the training rows rewards memorising; noisy eval labels stop early."""
    X, y = make_classification(n_samples=240, n_features=32, n_informative=8, flip_y=0.25,
                               n_classes=3, random_state=1)
    head, X = make_head(name), X.astype(np.float32)
    if name == "lightgbm":
        noise = np.random.default_rng(0).permutation(y)
        assert head.fit(X, y, X_eval=X, y_eval=noise).best_iteration_ < 100
        assert head.fit(X, y).best_iteration_ == head.default_rounds
    elif name == "logistic":
        head.set_params(Cs=(0.001, 100.0))
        assert head.fit(X, y, X_eval=X, y_eval=y).C_ == 100.0
        assert head.fit(X, y).C_ in head.Cs
    elif name == "knn":
        assert head.fit(X, y, X_eval=X, y_eval=y).k_ == 1
        assert head.fit(X, y).k_ > 1  # leave-one-out: a lone neighbour is noisy
    else:
        pytest.fail(f"add an eval-selection check for the new head {name!r}")


@pytest.mark.parametrize("name", head_names())
def test_eval_set_errors(name, blobs):
    X, y, X_eval, y_eval = blobs
    with pytest.raises(HeadError, match="both"):
        make_head(name).fit(X, y, X_eval=X_eval)
    with pytest.raises(HeadError, match="Sarcastic"):
        make_head(name).fit(X, y, X_eval=X_eval, y_eval=np.full(len(y_eval), "Sarcastic"))


def test_refuses_folder_with_pickle(fitted, tmp_path):
    fitted.save(tmp_path, fingerprint=FINGERPRINT, model=MODEL)
    (tmp_path / "extra.PKL").write_bytes(b"not really")
    with pytest.raises(HeadError, match="extra.PKL"):
        load_head(tmp_path)


def test_refuses_tampered_file(fitted, tmp_path):
    fitted.save(tmp_path, fingerprint=FINGERPRINT, model=MODEL)
    for name in json.loads((tmp_path / "head.json").read_text())["files"]:
        data = bytearray((tmp_path / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (tmp_path / name).write_bytes(bytes(data))
        with pytest.raises(HeadError, match=f"{name}.*damaged"):
            load_head(tmp_path)
        data[len(data) // 2] ^= 0xFF
        (tmp_path / name).write_bytes(bytes(data))
    load_head(tmp_path)  # restored bytes load again


@pytest.mark.parametrize("bad_name", ["../x", "/etc/passwd", "sub/x", "..", "a\\b"])
def test_refuses_file_names_outside_the_folder(bad_name, tmp_path):
    make_head("logistic").fit(*_tiny()).save(tmp_path, fingerprint=FINGERPRINT, model=MODEL)
    config = json.loads((tmp_path / "head.json").read_text())
    config["files"][bad_name] = config["files"].pop("weights.npz")
    (tmp_path / "head.json").write_text(json.dumps(config))
    with pytest.raises(HeadError, match="refusing file name"):
        load_head(tmp_path)


def test_refuses_bad_config(tmp_path):
    make_head("logistic").fit(*_tiny()).save(tmp_path, fingerprint=FINGERPRINT, model=MODEL)
    good = json.loads((tmp_path / "head.json").read_text())
    for field, value, message in [("format", "tweetheads-head/9", "format"),
                                  ("head", "svm", "unknown head"),
                                  ("params", {"gamma": 1}, "params"),
                                  ("n_features", "32", "n_features")]:
        (tmp_path / "head.json").write_text(json.dumps({**good, field: value}))
        with pytest.raises(HeadError, match=message):
            load_head(tmp_path)


@pytest.mark.parametrize("name", head_names())
def test_int_labels_come_back_as_ints(name, tmp_path):
    X, y = _tiny()
    head = make_head(name).fit(X, np.where(y == "a", 3, 7))
    loaded = load_head(head.save(tmp_path, fingerprint=FINGERPRINT, model=MODEL))
    assert loaded.classes_.dtype.kind == "i" and list(loaded.classes_) == [3, 7]
    assert np.array_equal(loaded.predict(X), head.predict(X))


def test_loading_one_head_imports_only_its_own_library(tmp_path):
    """A logistic head loads without importing faiss or LightGBM (``predict``'s start-up); a kNN head imports faiss."""
    import subprocess
    import sys

    X, y = np.random.default_rng(0).normal(size=(60, 4)), np.repeat(["a", "b", "c"], 20)
    for name in ("logistic", "knn"):
        get_head(name).fit(X, y).save(tmp_path / name, fingerprint=FINGERPRINT, model=MODEL)
    code = ("import sys; from heads import load_head; load_head(sys.argv[1]); "
            "print(sorted(m for m in ('faiss', 'lightgbm') if m in sys.modules))")
    found = {name: subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], capture_output=True, text=True,
                                  check=True).stdout.strip() for name in ("logistic", "knn")}
    assert found == {"logistic": "[]", "knn": "['faiss']"}


def test_registry():
    assert head_names() == ["knn", "lightgbm", "logistic"]
    assert {"logistic", "lightgbm", "knn"} <= set(HEADS)
    assert isinstance(get_head("knn", k=3), KNNHead)
    with pytest.raises(HeadError, match="logistic"):
        get_head("svm")
    with pytest.raises(HeadError, match="no parameter"):
        get_head("knn", gamma=1)


def test_heads_import_nothing_else_from_the_project():
    for path in Path(__file__).parents[1].joinpath("heads").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in {"embed", "cache", "scoring", "cli"}, path


@pytest.mark.parametrize("name", head_names())
def test_works_in_pipeline_cross_validation(name, blobs):
    X, y, _, _ = blobs
    scores = cross_val_score(make_pipeline(StandardScaler(), make_head(name)), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_knn_recall_against_exact():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 32)).astype(np.float32)
    y = rng.integers(0, 3, 2000)
    queries = rng.standard_normal((200, 32)).astype(np.float32)
    assert KNNHead(k=10, n_threads=1).fit(X, y).recall_against_exact(queries) == 1.0
    hnsw = KNNHead(k=10, index="hnsw", n_threads=1).fit(X, y)
    assert hnsw.recall_against_exact(queries) > 0.8
    ivf = KNNHead(k=10, index="ivf", nprobe=8, n_threads=1).fit(X, y)
    assert 0.3 < ivf.recall_against_exact(queries) <= 1.0
    assert ivf.index_.nlist == 2000 // 39
    np.testing.assert_allclose(ivf.predict_proba(queries).sum(axis=1), 1.0)


@pytest.mark.parametrize("index", ["hnsw", "ivf"])
def test_knn_approximate_round_trip(index, tmp_path, blobs):
    X, y, X_test, _ = blobs
    head = KNNHead(index=index, n_threads=1).fit(X, y)
    loaded = load_head(head.save(tmp_path, fingerprint=FINGERPRINT, model=MODEL))
    assert np.array_equal(loaded.predict_proba(X_test), head.predict_proba(X_test))
    assert loaded.recall_against_exact(X_test) == head.recall_against_exact(X_test)


def test_knn_caps_k_at_training_size():
    X, y = _tiny()
    head = KNNHead(k=50).fit(X, y)
    assert head.k_ == len(X)
    np.testing.assert_allclose(head.predict_proba(X).sum(axis=1), 1.0)


def test_lightgbm_binary_and_logistic_binary(blobs):
    X, y, X_test, y_test = blobs
    binary = y != "Neutral"
    for head in (LightGBMHead(**FAST["lightgbm"]), LogisticHead(**FAST["logistic"])):
        proba = head.fit(X[binary], y[binary]).predict_proba(X_test)
        assert proba.shape == (len(X_test), 2)
        assert np.mean(head.predict(X_test)[y_test != "Neutral"]
                       == y_test[y_test != "Neutral"]) > 0.9


def _tiny():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-2, 1, (6, 4)), rng.normal(2, 1, (6, 4))]).astype(np.float32)
    return X, np.array(["a"] * 6 + ["b"] * 6)


def _expected_failures(estimator) -> dict[str, str]:
    if isinstance(estimator, KNNHead):
        return {"check_class_weight_classifiers": (
            "kNN class weights scale the votes of the k neighbours found; a class with no neighbour "
            "among them gets no vote, while the check expects weights of 1000 : 0.0001 to override the "
            "data (scikit-learn's own KNeighborsClassifier has no class_weight)")}
    return {}


@parametrize_with_checks([LogisticHead(Cs=(0.1, 1.0), cv=2), LightGBMHead(**FAST["lightgbm"]),
                          KNNHead(**FAST["knn"])], expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("name", head_names())
def test_refit_with_selected_params_reproduces_the_selection(name, blobs):
    """selected_params() turns a search into constructor params: the refit predicts the same."""
    X, y, Xe, ye = blobs
    searched = make_head(name).fit(X, y, X_eval=Xe, y_eval=ye)
    chosen = searched.selected_params()
    assert chosen, "a head that searches must report what it chose"
    refit = make_head(name, **chosen).fit(X, y)
    np.testing.assert_array_equal(refit.predict(Xe), searched.predict(Xe))
    np.testing.assert_allclose(refit.predict_proba(Xe), searched.predict_proba(Xe), atol=1e-6)


def _rare_class(seed: int, n: int, shift: float = 0.8):
    """15% 'rare' rows, told apart from 'common' by one weakly shifted dimension of four."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.15, "rare", "common")
    X = rng.normal(size=(n, 4))
    X[:, 0] += (y == "rare") * shift
    return X, y


FIXED = {"logistic": {"C": 1.0}, "lightgbm": {"default_rounds": 100, "n_threads": 1}, "knn": {"k": 15, "n_threads": 1}}


@pytest.mark.parametrize("name", head_names())
def test_balanced_class_weight_raises_minority_recall_and_is_saved(name, tmp_path):
    X, y = _rare_class(0, 2000, shift=1.5)
    Xe, ye = _rare_class(1, 1000, shift=1.5)
    plain = get_head(name, **FIXED[name]).fit(X, y)
    balanced = get_head(name, class_weight="balanced", **FIXED[name]).fit(X, y)
    recall = [np.mean(h.predict(Xe)[ye == "rare"] == "rare") for h in (plain, balanced)]
    assert recall[1] > recall[0] + 0.2, recall  # measured: 0.22-0.30 -> 0.71-0.78
    balanced.save(tmp_path / "h", fingerprint=FINGERPRINT, model=MODEL)
    assert json.loads((tmp_path / "h" / "head.json").read_text())["params"]["class_weight"] == "balanced"
    loaded = load_head(tmp_path / "h")
    assert loaded.class_weight == "balanced"
    np.testing.assert_array_equal(loaded.predict_proba(Xe), balanced.predict_proba(Xe))
    # a dict of label -> weight (scikit-learn's form) survives the JSON round trip too
    weighted = get_head(name, class_weight={"rare": 5.0}, **FIXED[name]).fit(X, y)
    weighted.save(tmp_path / "d", fingerprint=FINGERPRINT, model=MODEL)
    np.testing.assert_array_equal(load_head(tmp_path / "d").predict_proba(Xe), weighted.predict_proba(Xe))
    assert np.mean(weighted.predict(Xe)[ye == "rare"] == "rare") > recall[0]


@pytest.mark.parametrize("name", head_names())
def test_selection_follows_the_chosen_metric(name):
    """On a rare class with a weak signal, accuracy favours predicting 'common' and macro-F1 does not."""
    from heads.base import selection_score

    X, y = _rare_class(0, 2000)
    Xe, ye = _rare_class(1, 1000)
    grid = {"logistic": {"Cs": (1e-5, 10.0)}, "knn": {"ks": (1, 60), "n_threads": 1},
            "lightgbm": {"n_estimators": 300, "early_stopping_rounds": 300, "n_threads": 1}}[name]
    fitted = {m: get_head(name, select_metric=m, **grid).fit(X, y, X_eval=Xe, y_eval=ye)
              for m in ("accuracy", "macro_f1")}
    chosen = {m: h.selected_params() for m, h in fitted.items()}
    assert chosen["accuracy"] != chosen["macro_f1"], chosen
    if name == "lightgbm":  # the round: within one standard error of the best round on the metric
        head, n = fitted["macro_f1"], len(ye)

        def at_round(r):  # binary: LightGBM gives P(second class)
            return head.classes_[(head.booster_.predict(Xe, num_iteration=r) > 0.5).astype(int)]

        curve = [selection_score("macro_f1", ye, at_round(r)) for r in range(1, head.booster_.current_iteration() + 1)]
        best, got = max(curve), curve[fitted["macro_f1"].best_iteration_ - 1]
        assert got >= best - np.sqrt(best * (1 - best) / n) - 1e-9, (got, best)
        return
    for metric, head in fitted.items():  # each choice wins on its own metric
        other = fitted["macro_f1" if metric == "accuracy" else "accuracy"]
        assert selection_score(metric, ye, head.predict(Xe)) > selection_score(metric, ye, other.predict(Xe))


def test_bad_class_weight_and_select_metric_are_refused():
    X, y = _rare_class(0, 100)
    with pytest.raises(HeadError, match="class_weight must be None, 'balanced'"):
        get_head("logistic", class_weight="weighted").fit(X, y)
    with pytest.raises(HeadError, match="select_metric must be one of accuracy, macro_f1, macro_recall"):
        get_head("knn", select_metric="f1").fit(X, y)
