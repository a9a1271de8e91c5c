"""Split properties on the real UTD-MHAD subjects, per trial and per window."""

import numpy as np
import pytest

from xtinyhar.data.splits import make_splits
from xtinyhar.errors import XTinyHARError


@pytest.fixture(scope="module")
def trial_subjects(utd_trials):
    return np.array([t.subject for t in utd_trials[0]])


def assert_disjoint(subjects, split):
    sides = [set(subjects[idx]) for idx in (split.train, split.val, split.test)]
    assert all(len(side) > 0 for side in sides)
    assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
    every = np.concatenate([split.train, split.val, split.test])
    assert len(every) == len(subjects) and len(np.unique(every)) == len(subjects)
    assert set(split.test_subjects) == sides[2] and set(split.val_subjects) == sides[1]


@pytest.mark.parametrize("protocol, n_folds", [("kfold", 5), ("loso", 8), ("standard", 1)])
def test_no_subject_on_two_sides(trial_subjects, protocol, n_folds):
    splits = make_splits(trial_subjects, protocol, folds=5, seed=42, val_subjects=1)
    assert len(splits) == n_folds
    for split in splits:
        assert_disjoint(trial_subjects, split)


@pytest.mark.parametrize("protocol", ["kfold", "loso"])
def test_every_trial_tested_exactly_once(trial_subjects, protocol):
    splits = make_splits(trial_subjects, protocol, folds=5, seed=42)
    tested = np.concatenate([s.test for s in splits])
    assert len(tested) == 861 and np.array_equal(np.sort(tested), np.arange(861))


def test_kfold_uses_all_subjects_and_depends_on_seed(trial_subjects):
    a = make_splits(trial_subjects, "kfold", folds=5, seed=1)
    b = make_splits(trial_subjects, "kfold", folds=5, seed=2)
    assert sorted(s for sp in a for s in sp.test_subjects) == list(range(1, 9))
    assert [sp.test_subjects for sp in a] != [sp.test_subjects for sp in b]
    again = make_splits(trial_subjects, "kfold", folds=5, seed=1)
    assert all(np.array_equal(x.test, y.test) and np.array_equal(x.val, y.val) for x, y in zip(a, again))


def test_standard_split_is_odd_train_even_test(trial_subjects):
    (split,) = make_splits(trial_subjects, "standard", val_subjects=1)
    assert split.test_subjects == (2, 4, 6, 8)
    assert set(split.train_subjects) | set(split.val_subjects) == {1, 3, 5, 7}
    assert len(split.val_subjects) == 1


def test_loso_tests_each_subject_once(trial_subjects):
    splits = make_splits(trial_subjects, "loso")
    assert [s.test_subjects for s in splits] == [(k,) for k in range(1, 9)]


def test_windows_split_by_subject_too(utd_cache):
    for split in make_splits(utd_cache.subject, "kfold", folds=5, seed=0):
        assert_disjoint(utd_cache.subject, split)
        # all windows of one trial stay on one side
        for side in (split.train, split.val, split.test):
            trials = set(utd_cache.trial_index[side])
            others = np.setdiff1d(np.arange(len(utd_cache)), side)
            assert not trials & set(utd_cache.trial_index[others])


def test_bad_requests(trial_subjects):
    with pytest.raises(XTinyHARError, match="more than the number of subjects"):
        make_splits(trial_subjects, "kfold", folds=9)
    with pytest.raises(XTinyHARError, match="leaves no training subject"):
        make_splits(trial_subjects, "standard", val_subjects=4)
    with pytest.raises(XTinyHARError, match="unknown protocol"):
        make_splits(trial_subjects, "random")


def test_zero_validation_subjects_keeps_all_training_subjects(trial_subjects):
    (split,) = make_splits(trial_subjects, "standard", val_subjects=0)
    assert split.train_subjects == (1, 3, 5, 7) and split.val_subjects == () and len(split.val) == 0


def test_validation_protocol_never_touches_the_standard_test_subjects(trial_subjects):
    splits = make_splits(trial_subjects, "validation", seed=42, val_subjects=0)
    assert [s.test_subjects for s in splits] == [(7,), (5,), (3,), (1,)]
    for split in splits:
        used = np.concatenate([split.train, split.val, split.test])
        assert set(trial_subjects[used]) == {1, 3, 5, 7}
        assert set(split.train_subjects) == {1, 3, 5, 7} - set(split.test_subjects)
    with_val = make_splits(trial_subjects, "validation", seed=42, val_subjects=1)
    for split in with_val:
        assert len(split.val_subjects) == 1 and not set(split.val_subjects) & {2, 4, 6, 8}


def test_standard_training_subjects_per_dataset():
    """MM-Fit's standard split is its official one, in participants, and subject-disjoint."""
    from xtinyhar.data.mm_fit import MM_FIT_PARTICIPANT, MM_FIT_SPLIT
    from xtinyhar.data.splits import standard_train_subjects

    assert standard_train_subjects("utd-mhad") == (1, 3, 5, 7)
    assert standard_train_subjects("synthetic") == (1, 3, 5, 7)
    train = standard_train_subjects("mm-fit")
    test = {MM_FIT_PARTICIPANT[w] for w in MM_FIT_SPLIT["test"]}
    assert train == (0, 1, 5, 6, 7, 8) and test == {2, 3, 4, 9} and not set(train) & test
    participants = np.array(sorted(MM_FIT_PARTICIPANT.values()))
    split, = make_splits(participants, "standard", val_subjects=0, standard_train=train)
    assert set(participants[split.test]) == test
