"""Subject-independent splits: no subject is ever on both sides of a split.

Every function takes the per-sample ``subjects`` array (per trial or per window: the same
code serves both) and returns index arrays into it. Three protocols:
- ``kfold``: subjects shuffled with the seed and dealt into k folds; every sample is tested
  exactly once (``sklearn.model_selection.GroupKFold`` with shuffling);
- ``loso``: leave one subject out;
- ``standard``: a fixed list of training subjects, the rest tested (UTD-MHAD's cross-subject
  protocol: subjects 1,3,5,7 train, 2,4,6,8 test);
- ``validation``: for choosing hyper-parameters without touching the standard test
  subjects: those are left out of every fold, and each standard training subject is held
  out in turn (7, 5, 3, 1: ``--max-folds 2`` holds out 7 and then 5).
A validation set for early stopping and model selection is carved from the training
subjects only (``carve_validation``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

from xtinyhar.config import PROTOCOLS  # noqa: F401  (re-exported)
from xtinyhar.errors import XTinyHARError

UTD_MHAD_STANDARD_TRAIN = (1, 3, 5, 7)


def standard_train_subjects(dataset: str) -> tuple[int, ...]:
    """Training subjects of a dataset's ``standard`` protocol (everyone else is tested).

    UTD-MHAD (and the synthetic set, numbered alike): 1, 3, 5, 7. MM-Fit's subjects are
    participants (see ``load_dataset``); its official split is by workout, and the
    participants of its train and val workouts (0, 1, 5, 6, 7, 8) never appear in its
    cross-subject test workouts (2, 3, 4, 9), so those are its standard training subjects.
    """
    if dataset == "mm-fit":
        from xtinyhar.data.mm_fit import MM_FIT_PARTICIPANT, MM_FIT_SPLIT
        workouts = MM_FIT_SPLIT["train"] + MM_FIT_SPLIT["val"]
        return tuple(sorted({MM_FIT_PARTICIPANT[w] for w in workouts}))
    return UTD_MHAD_STANDARD_TRAIN


@dataclass(frozen=True)
class Split:
    """Indices of one fold. ``train`` excludes ``val``; all three are subject-disjoint."""
    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_subjects: tuple[int, ...]
    val_subjects: tuple[int, ...]
    test_subjects: tuple[int, ...]


def _subjects_of(subjects: np.ndarray, index: np.ndarray) -> tuple[int, ...]:
    return tuple(sorted(int(s) for s in np.unique(subjects[index])))


def kfold_test_sets(subjects: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Test indices of each of ``folds`` subject-disjoint folds."""
    n_subjects = len(np.unique(subjects))
    if folds > n_subjects:
        raise XTinyHARError(f"eval.folds ({folds}) is more than the number of subjects ({n_subjects})")
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(subjects, groups=subjects)]


def loso_test_sets(subjects: np.ndarray) -> list[np.ndarray]:
    """Test indices for leave-one-subject-out, one fold per subject in ascending order."""
    return [test for _, test in LeaveOneGroupOut().split(subjects, groups=subjects)]


def standard_test_sets(subjects: np.ndarray,
                       train_subjects: tuple[int, ...] = UTD_MHAD_STANDARD_TRAIN) -> list[np.ndarray]:
    """One fold: every subject not in ``train_subjects`` is tested."""
    test = np.flatnonzero(~np.isin(subjects, train_subjects))
    if len(test) == 0 or len(test) == len(subjects):
        raise XTinyHARError(f"standard split with training subjects {train_subjects} leaves "
                            "an empty train or test side for these subjects")
    return [test]


def validation_test_sets(subjects: np.ndarray,
                         train_subjects: tuple[int, ...] = UTD_MHAD_STANDARD_TRAIN) -> list[np.ndarray]:
    """One fold per standard training subject (descending), tested on that subject alone."""
    present = [s for s in sorted(train_subjects, reverse=True) if np.any(subjects == s)]
    if len(present) < 2:
        raise XTinyHARError(f"validation protocol needs at least two of the standard training "
                            f"subjects {train_subjects} in the data")
    return [np.flatnonzero(subjects == s) for s in present]


def carve_validation(subjects: np.ndarray, train: np.ndarray, n_val_subjects: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Move ``n_val_subjects`` randomly chosen training subjects to a validation set
    (none with 0: then training keeps its last epoch instead of selecting on validation)."""
    pool = np.unique(subjects[train])
    if n_val_subjects == 0:
        return train, train[:0]
    if n_val_subjects >= len(pool):
        raise XTinyHARError(f"eval.val_subjects ({n_val_subjects}) leaves no training subject "
                            f"(only {len(pool)} available)")
    chosen = np.random.default_rng(seed).choice(pool, size=n_val_subjects, replace=False)
    is_val = np.isin(subjects[train], chosen)
    return train[~is_val], train[is_val]


def make_splits(subjects: np.ndarray, protocol: str, *, folds: int = 5, seed: int = 42,
                val_subjects: int = 1,
                standard_train: tuple[int, ...] = UTD_MHAD_STANDARD_TRAIN) -> list[Split]:
    """All folds of ``protocol`` with train/val/test indices into ``subjects``."""
    subjects = np.asarray(subjects)
    if protocol == "kfold":
        test_sets = kfold_test_sets(subjects, folds, seed)
    elif protocol == "loso":
        test_sets = loso_test_sets(subjects)
    elif protocol == "standard":
        test_sets = standard_test_sets(subjects, standard_train)
    elif protocol == "validation":
        test_sets = validation_test_sets(subjects, standard_train)
    else:
        raise XTinyHARError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    splits = []
    everything = np.arange(len(subjects))
    if protocol == "validation":   # the standard test subjects take no part at all
        everything = np.flatnonzero(np.isin(subjects, standard_train))
    for fold, test in enumerate(test_sets):
        train_all = np.setdiff1d(everything, test)
        train, val = carve_validation(subjects, train_all, val_subjects, seed + fold)
        splits.append(Split(fold, train, val, np.sort(test),
                            _subjects_of(subjects, train), _subjects_of(subjects, val),
                            _subjects_of(subjects, test)))
    return splits
