"""Classification metrics (xtinyhar.evaluate.metrics) against hand-computed tiny examples."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from xtinyhar.evaluate.metrics import (
    classification_metrics,
    format_summary_table,
    pool_trials,
    summarize_folds,
)

NAMES = ["walk", "sit", "jump"]
Y_TRUE = np.array([0, 0, 1, 1, 2])
Y_PRED = np.array([0, 1, 1, 1, 0])


@pytest.fixture
def m():
    return classification_metrics(Y_TRUE, Y_PRED, NAMES)


# ----------------------------------------------------------------------------- classification

def test_accuracy_and_confusion_hand_example(m):
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["n"] == 5
    # rows = true, cols = predicted
    assert m["confusion"] == [[1, 1, 0],
                              [0, 2, 0],
                              [1, 0, 0]]


def test_kappa_matches_sklearn_and_hand_computation(m):
    # p_o = 3/5; true marginals (2,2,1)/5, predicted (2,3,0)/5 -> p_e = (4+6+0)/25 = 0.4
    p_o, p_e = 0.6, 0.4
    assert m["kappa"] == pytest.approx((p_o - p_e) / (1 - p_e))  # 1/3
    assert m["kappa"] == pytest.approx(cohen_kappa_score(Y_TRUE, Y_PRED))


def test_per_class_hand_example(m):
    walk, sit, jump = (m["per_class"][n] for n in NAMES)
    assert walk == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert sit == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert jump == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert m["f1_macro"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert m["precision_macro"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert m["recall_macro"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_micro_scores_equal_accuracy_for_single_label_multiclass(m):
    for key in ("precision_micro", "recall_micro", "f1_micro"):
        assert m[key] == pytest.approx(m["accuracy"])


def test_headline_follows_averaging(m):
    assert m["averaging"] == "macro" and m["headline_f1"] == m["f1_macro"]
    micro = classification_metrics(Y_TRUE, Y_PRED, NAMES, averaging="micro")
    assert micro["averaging"] == "micro" and micro["headline_f1"] == micro["f1_micro"]


def test_absent_class_listed_with_zero_support_but_not_in_macro_average(m):
    four = classification_metrics(Y_TRUE, Y_PRED, NAMES + ["clap"])
    assert four["per_class"]["clap"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                         "support": 0}
    assert len(four["confusion"]) == 4 and all(len(r) == 4 for r in four["confusion"])
    assert four["confusion"][3] == [0, 0, 0, 0]
    # macro averages over the classes that occur, so an absent class does not count as 0
    assert four["f1_macro"] == pytest.approx(m["f1_macro"])
    assert four["kappa"] == pytest.approx(m["kappa"])


def test_result_is_strict_json(m):
    assert json.loads(json.dumps(m, allow_nan=False)) == m


def test_undefined_kappa_is_none():
    out = classification_metrics(np.array([1, 1]), np.array([1, 1]), NAMES)
    assert out["kappa"] is None and out["accuracy"] == 1.0
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize("y_true, y_pred, names, averaging, match", [
    ([0, 1], [0, 1, 1], NAMES, "macro", "differ in length"),
    ([[0, 1]], [[0, 1]], NAMES, "macro", "1-D"),
    ([0, 3], [0, 1], NAMES, "macro", r"outside \[0, 3\)"),
    ([0, -1], [0, 1], NAMES, "macro", "outside"),
    ([0.0, 1.0], [0, 1], NAMES, "macro", "integer"),
    ([], [], NAMES, "macro", "empty"),
    ([0, 1], [0, 1], NAMES, "weighted", "averaging"),
    ([0], [0], [], "macro", "class_names"),
])
def test_bad_input_raises_value_error(y_true, y_pred, names, averaging, match):
    # np.array([]) is float64; give empty lists an int dtype so "empty" is what is tested
    with pytest.raises(ValueError, match=match):
        classification_metrics(np.array(y_true, dtype=None if y_true else int),
                               np.array(y_pred, dtype=None if y_pred else int), names,
                               averaging=averaging)


# ----------------------------------------------------------------------------- pool_trials

def test_pool_trials_averages_windows_of_each_trial():
    probs = np.array([[0.8, 0.2],   # trial 7
                      [0.9, 0.1],   # trial 3
                      [0.4, 0.6],   # trial 7
                      [0.1, 0.9]])  # trial 5
    ids, pooled = pool_trials(probs, np.array([7, 3, 7, 5]))
    np.testing.assert_array_equal(ids, [3, 5, 7])
    np.testing.assert_allclose(pooled, [[0.9, 0.1], [0.1, 0.9], [0.6, 0.4]])


def test_pool_trials_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="trial_index"):
        pool_trials(np.ones((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="window_probs"):
        pool_trials(np.ones(3), np.array([0, 1, 2]))


# ----------------------------------------------------------------------------- summaries

def test_summarize_folds_mean_and_sample_std():
    folds = [{"accuracy": 0.8, "f1_macro": 0.7}, {"accuracy": 0.9, "f1_macro": 0.9},
             {"accuracy": 1.0, "f1_macro": 0.8}]
    s = summarize_folds(folds, keys=("accuracy", "f1_macro"))
    assert s["accuracy"]["mean"] == pytest.approx(0.9)
    assert s["accuracy"]["std"] == pytest.approx(0.1)  # sqrt((0.01 + 0 + 0.01) / 2)
    assert s["accuracy"]["values"] == [0.8, 0.9, 1.0]
    assert s["f1_macro"]["mean"] == pytest.approx(0.8)
    assert s["f1_macro"]["std"] == pytest.approx(0.1)


def test_summarize_single_fold_has_zero_std_and_skips_undefined():
    s = summarize_folds([{"kappa": 0.5}], keys=("kappa",))
    assert s["kappa"] == {"mean": 0.5, "std": 0.0, "values": [0.5]}
    s = summarize_folds([{"kappa": None}, {"kappa": 0.4}, {"kappa": 0.6}], keys=("kappa",))
    assert s["kappa"]["mean"] == pytest.approx(0.5)
    assert s["kappa"]["values"] == [None, 0.4, 0.6]


def test_summarize_folds_errors():
    with pytest.raises(ValueError, match="empty"):
        summarize_folds([])
    with pytest.raises(ValueError, match="'kappa' is missing"):
        summarize_folds([{"accuracy": 1.0}], keys=("accuracy", "kappa"))


def test_summarize_real_fold_metrics_and_format_table():
    folds = [classification_metrics(Y_TRUE, Y_PRED, NAMES),
             classification_metrics(Y_TRUE, Y_TRUE, NAMES)]
    s = summarize_folds(folds)
    assert set(s) == {"accuracy", "f1_macro", "f1_micro", "kappa"}
    assert s["accuracy"]["mean"] == pytest.approx(0.8)
    table = format_summary_table([("student", s), ("a-much-longer-name", {})])
    lines = table.splitlines()
    assert lines[0].split() == ["model", "accuracy", "macro-F1", "kappa"]
    assert "0.800 ± 0.283" in lines[2]  # std of (0.6, 1.0) with ddof=1
    assert lines[3].split() == ["a-much-longer-name", "-", "-", "-"]
    assert len({len(line) for line in lines[:3]}) == 1  # columns aligned
