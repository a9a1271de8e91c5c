"""Dataset loaders. Each returns ``list[Trial]`` plus class names (see ``trial.py``)."""

from __future__ import annotations

from xtinyhar.config import Config
from xtinyhar.data.trial import LoadReport, Trial

__all__ = ["LoadReport", "Trial", "load_dataset"]


def load_dataset(cfg: Config, *, skip_bad: bool = False, with_skeleton: bool = True) -> LoadReport:
    """Load the dataset named by ``cfg.data.dataset`` from ``cfg.data.root``."""
    name = cfg.data.dataset
    if name == "utd-mhad":
        from xtinyhar.data.utd_mhad import load_utd_mhad_report
        return load_utd_mhad_report(cfg.data.root, with_skeleton=with_skeleton, skip_bad=skip_bad)
    if name == "mm-fit":
        from xtinyhar.data.mm_fit import load_mm_fit_report
        return load_mm_fit_report(cfg.data.root, device=cfg.data.mm_fit.device,
                                  side=cfg.data.mm_fit.side, skip_bad=skip_bad,
                                  skeleton=with_skeleton, subject_from="participant")
    if name == "synthetic":
        from xtinyhar.data.synthetic import generate_synthetic
        syn = cfg.data.synthetic
        trials, classes = generate_synthetic(subjects=syn.subjects,
                                             trials_per_class=syn.trials_per_class,
                                             seconds=syn.seconds, imu_hz=cfg.data.imu_sr,
                                             seed=syn.seed)
        if not with_skeleton:
            for trial in trials:
                trial.skeleton, trial.skeleton_hz = None, None
        return LoadReport(trials, classes)
    if name == "custom":
        from xtinyhar.data.custom import load_custom_report
        return load_custom_report(cfg.data, skip_bad=skip_bad)
    raise AssertionError(name)  # the config validates the name
