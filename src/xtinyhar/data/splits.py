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

Own data (``data.dataset: custom``) adds two cases:
- ``predefined``: the train/test split that came with the data (a manifest's or an .npz's
  ``split``, a ``NAME_TRAIN.ts`` / ``NAME_TEST.ts`` pair), one fold;
- recordings without subjects: every recording is its own group, and ``kfold`` becomes a
  stratified k-fold over recordings (``StratifiedGroupKFold``), with a warning that the
  estimate is not subject-independent; ``loso`` is refused; validation is a stratified fifth
  of the training recordings.
``auto`` picks ``predefined`` when the data has a split, else ``kfold``; for own data
``standard`` means ``predefined``. ``splits_for_cache`` applies all this to a token cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import logging

import numpy as np
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut, StratifiedGroupKFold

from xtinyhar.config import PROTOCOLS  # noqa: F401  (re-exported)
from xtinyhar.errors import XTinyHARError

log = logging.getLogger(__name__)

UTD_MHAD_STANDARD_TRAIN = (1, 3, 5, 7)
VAL_FRACTION = 0.2   # validation share of the training recordings when there are no subjects


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


def stratified_test_sets(labels: np.ndarray, groups: np.ndarray, folds: int,
                         seed: int) -> list[np.ndarray]:
    """Test indices of ``folds`` folds that keep each group (recording) whole and the class
    mix of every fold close to the whole data's."""
    n_groups = len(np.unique(groups))
    if folds > n_groups:
        raise XTinyHARError(f"eval.folds ({folds}) is more than the number of recordings ({n_groups})")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(groups, labels, groups=groups)]


def carve_recordings(groups: np.ndarray, labels: np.ndarray, train: np.ndarray,
                     fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Move about ``fraction`` of each class's training recordings (none of a class with
    fewer than 3) to a validation set: validation without subjects."""
    if fraction <= 0:
        return train, train[:0]
    rng = np.random.default_rng(seed)
    recording_label = {int(g): int(labels[train][np.flatnonzero(groups[train] == g)[0]])
                       for g in np.unique(groups[train])}
    chosen = []
    for label in sorted(set(recording_label.values())):
        pool = sorted(g for g, lab in recording_label.items() if lab == label)
        take = int(round(fraction * len(pool))) if len(pool) >= 3 else 0
        chosen += list(rng.choice(pool, size=take, replace=False)) if take else []
    is_val = np.isin(groups[train], chosen)
    return train[~is_val], train[is_val]


def make_splits(subjects: np.ndarray, protocol: str, *, folds: int = 5, seed: int = 42,
                val_subjects: int = 1,
                standard_train: tuple[int, ...] = UTD_MHAD_STANDARD_TRAIN,
                labels: np.ndarray | None = None, subjects_known: bool = True,
                test_mask: np.ndarray | None = None) -> list[Split]:
    """All folds of ``protocol`` with train/val/test indices into ``subjects``.

    ``subjects_known=False`` (``subjects`` numbers recordings, not people) turns ``kfold``
    into a stratified k-fold over recordings by ``labels`` and validation into a stratified
    fifth of the training recordings; ``predefined`` tests where ``test_mask`` is true."""
    subjects = np.asarray(subjects)
    if not subjects_known and protocol in ("loso", "standard", "validation"):
        raise XTinyHARError(f"protocol {protocol} needs subjects, and the data has none; use kfold "
                            "(stratified over recordings) or give each recording a subject")
    if protocol == "predefined":
        if test_mask is None:
            raise XTinyHARError("protocol predefined needs data that comes with a train/test split "
                                "(a split column, or a NAME_TRAIN.ts / NAME_TEST.ts pair)")
        test_sets = [np.flatnonzero(np.asarray(test_mask, bool))]
        if len(test_sets[0]) in (0, len(subjects)):
            raise XTinyHARError("the predefined split leaves an empty train or test side")
    elif protocol == "kfold" and not subjects_known:
        if labels is None:
            raise XTinyHARError("a stratified k-fold needs the labels")
        test_sets = stratified_test_sets(np.asarray(labels), subjects, folds, seed)
    elif protocol == "kfold":
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
        if subjects_known:
            train, val = carve_validation(subjects, train_all, val_subjects, seed + fold)
        else:
            train, val = carve_recordings(subjects, np.asarray(labels), train_all,
                                          VAL_FRACTION if val_subjects else 0.0, seed + fold)
        splits.append(Split(fold, train, val, np.sort(test),
                            _subjects_of(subjects, train), _subjects_of(subjects, val),
                            _subjects_of(subjects, test)))
    return splits


def resolve_protocol(protocol: str, meta: dict) -> str:
    """``auto`` -> ``predefined`` when the data has its own split, else ``kfold``; for own
    data, ``standard`` is its predefined split (the built-in datasets' standard subjects mean
    nothing there)."""
    has_split = "trial_split" in meta
    if protocol == "auto":
        return "predefined" if has_split else "kfold"
    if protocol == "standard" and meta.get("dataset") == "custom":
        if not has_split:
            raise XTinyHARError("protocol standard on own data means its predefined train/test "
                                "split, and the data has none; use --protocol kfold or auto")
        return "predefined"
    return protocol


def splits_for_cache(cache, protocol: str, *, folds: int, seed: int, val_subjects: int,
                     standard_train: tuple[int, ...] = UTD_MHAD_STANDARD_TRAIN
                     ) -> tuple[str, list[Split]]:
    """The protocol actually used (see :func:`resolve_protocol`) and its folds over the
    windows of a token cache, warning when the folds are not subject-independent."""
    meta = cache.meta
    protocol = resolve_protocol(protocol, meta)
    known = meta.get("subjects_known", True)
    test_mask = None
    if "trial_split" in meta:
        test_mask = np.asarray(meta["trial_split"])[cache.trial_index] == "test"
    if protocol == "kfold" and not known:
        log.warning("the data has no subjects: stratified %d-fold over recordings; a person's "
                    "recordings can be on both sides, so the estimate is not subject-independent "
                    "(give each recording a subject for that)", folds)
    if protocol == "predefined":
        train_side = cache.trial_subject[np.asarray(meta["trial_split"]) == "train"]
        test_side = cache.trial_subject[np.asarray(meta["trial_split"]) == "test"]
        if not known or np.isin(test_side, train_side).any():
            log.warning("the predefined split is used as given: %s, so the estimate is not "
                        "subject-independent", "the data has no subjects" if not known
                        else "some subjects are on both sides")
    splits = make_splits(cache.subject, protocol, folds=folds, seed=seed, val_subjects=val_subjects,
                         standard_train=standard_train, labels=cache.label, subjects_known=known,
                         test_mask=test_mask)
    return protocol, splits
