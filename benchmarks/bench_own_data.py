"""Benchmark: the own-data path on a public real activity dataset, as one table.

    .venv/bin/python benchmarks/bench_own_data.py [--dataset BasicMotions]
        [--seeds 42 43 44] [--runs runs/bench_own_data] [--models student cnn1d ...] [--set KEY=VALUE ...]

The data are UEA/UCR ``.ts`` pairs that aeon ships (read in place from aeon's package
folder), each with its predefined train/test split, which is the protocol used: the files
carry no subject ids, so no subject-independent split can be made.

- ``BasicMotions``: a smart watch's accelerometer and gyroscope (6 channels) at 10 Hz, 10 s
  per recording, 4 activities (standing, walking, running, badminton), 40 train / 40 test.
  The file does not state units; the values (standing 0 +- 0.3 on every acc axis, running up
  to ~11) are gravity-free acceleration in m/s2 and angular rate in rad/s, so those are set.
- ``PickupGestureWiimoteZ``: a Wii remote's z acceleration (1 channel, in g), 29 to 361
  samples per recording, 10 gestures, 50 train / 50 test. The rate is not in the file; 100 Hz
  is assumed. Layout ``other`` (one channel), so dynamic patching is off.

Every model is trained on the TRAIN file only (validation: a stratified fifth of the
training recordings) and scored once on the TEST file; accuracy and macro-F1 are over
recordings (a recording's prediction is the mean over its windows). Rows:

- student, 1D-CNN, MiniRocket on windows, MiniRocket on whole recordings: ``xtinyhar cv``'s
  code (``run_cv``, protocol ``predefined``) with ``configs/own_data.yaml`` and the
  dataset's settings above, ``model.student.arch`` chosen per row;
- ``HarClassifier()``: the Python API with its defaults and the same dataset settings,
  fitted on the TRAIN arrays and scored on the TEST arrays.

Each seed trains anew (``train.seed``; MiniRocket's random kernels take it too). Runs go to
``<runs>/<dataset>/<model>_seed<N>`` and are resumed. ``params``: trainable weights; for
MiniRocket the ridge classifier's weights (its kernels are fixed, not learned).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

DATASETS = {
    "BasicMotions": {"data.imu_sr": 10, "data.custom.acc_unit": "m/s2",
                     "data.custom.gyro_unit": "rad/s"},
    "PickupGestureWiimoteZ": {"data.imu_sr": 100, "data.imu_channels": 1,
                              "data.custom.layout": "other",
                              "preproc.dynamic_patch.enabled": False},
}
MODELS = {"student": ("XTinyHAR student", "transformer"), "cnn1d": ("1D-CNN", "cnn1d"),
          "minirocket": ("MiniRocket, windows", "minirocket"),
          "minirocket_trial": ("MiniRocket, whole recordings", "minirocket_trial"),
          "api": ("HarClassifier() defaults", None)}
MINIROCKET_FEATURES = 9_996   # aeon's MiniRocket with 10,000 kernels: 84 x 119 features


def ts_files(dataset: str) -> tuple[Path, Path]:
    import aeon.datasets

    folder = Path(aeon.datasets.__file__).parent / "data" / dataset
    return folder / f"{dataset}_TRAIN.ts", folder / f"{dataset}_TEST.ts"


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def run_cli_path(config: Path, overrides: dict, arch: str, seed: int, run_dir: Path) -> tuple[float, float, int]:
    """Accuracy, macro-F1 over test recordings and parameter count of one cv run."""
    from xtinyhar.config import load_config
    from xtinyhar.data import load_dataset
    from xtinyhar.evaluate.cv import run_cv
    from xtinyhar.evaluate.profile import count_parameters
    from xtinyhar.preprocess.tokens import build_token_cache
    from xtinyhar.train.checkpoints import load_model

    cfg = load_config(config, {**overrides, "model.student.arch": arch, "train.seed": seed})
    report = load_dataset(cfg)
    cache = build_token_cache(cfg, report.trials, report.class_names)
    summary = run_cv(cfg, cache, protocol="predefined", run_dir=run_dir, resume=True, kd=False)
    block = summary["student_trial"]
    if arch.startswith("minirocket"):
        params = MINIROCKET_FEATURES * len(report.class_names) + len(report.class_names)
    else:
        params = count_parameters(load_model(run_dir / "folds" / "0" / "student.pt", "student")[0])
    return block["accuracy"]["values"][0], block["f1_macro"]["values"][0], params


def run_api(train: Path, test: Path, overrides: dict, seed: int) -> tuple[float, float, int]:
    from aeon.datasets import load_from_ts_file
    from sklearn.metrics import f1_score

    from xtinyhar import HarClassifier
    from xtinyhar.evaluate.profile import count_parameters

    arrays = {}
    for side, path in (("train", train), ("test", test)):
        x, y = load_from_ts_file(str(path))
        arrays[side] = ([np.asarray(case, dtype=np.float64).T for case in x], list(y))
    settings = {k: v for k, v in overrides.items() if k not in ("data.root", "eval.protocol")}
    clf = HarClassifier(**settings, **{"train.seed": seed}).fit(*arrays["train"])
    X_test, y_test = arrays["test"]
    predicted = clf.predict(X_test)
    accuracy = float(np.mean(predicted == np.asarray(y_test)))
    return accuracy, float(f1_score(y_test, predicted, average="macro")), count_parameters(clf.model_)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=list(DATASETS), default="BasicMotions")
    parser.add_argument("--config", default=str(REPO / "configs" / "own_data.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--runs", default=str(REPO / "runs" / "bench_own_data"))
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key for every model (repeatable)")
    args = parser.parse_args()

    from xtinyhar.errors import XTinyHARError
    from xtinyhar.io import write_json

    train, test = ts_files(args.dataset)
    from xtinyhar.cli import parse_overrides

    overrides = {"data.root": str(train), "eval.protocol": "predefined", **DATASETS[args.dataset],
                 **parse_overrides(args.set)}
    runs = Path(args.runs) / args.dataset
    rows = []
    try:
        for key in args.models:
            name, arch = MODELS[key]
            accs, f1s, params = [], [], None
            for seed in args.seeds:
                started = time.perf_counter()
                if arch is None:
                    acc, f1, params = run_api(train, test, overrides, seed)
                else:
                    acc, f1, params = run_cli_path(Path(args.config), overrides, arch, seed,
                                                   runs / f"{key}_seed{seed}")
                accs.append(acc)
                f1s.append(f1)
                print(f"  {name}, seed {seed}: accuracy {acc:.3f}, macro-F1 {f1:.3f} "
                      f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
            rows.append({"key": key, "model": name, "accuracy": accs, "f1_macro": f1s, "params": params})
    except XTinyHARError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    print(f"\n{args.dataset} (aeon's copy), predefined split {train.name} / {test.name}; "
          f"{Path(args.config).name} + {' '.join(f'{k}={v}' for k, v in DATASETS[args.dataset].items())} "
          f"{' '.join(args.set)}; "
          f"mean ± std over seeds {', '.join(map(str, args.seeds))}, per test recording")
    header = f"{'model':<30} {'accuracy':>15} {'macro-F1':>15} {'params':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<30} {mean_std(r['accuracy']):>15} {mean_std(r['f1_macro']):>15} "
              f"{r['params']:>8,}")
    write_json(runs / "bench_own_data.json", {"dataset": args.dataset, "config": args.config,
                                             "settings": DATASETS[args.dataset],
                                             "seeds": args.seeds, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
