"""UTD-MHAD loader: inertial (50 Hz, acc g + gyro deg/s) and Kinect skeleton (~30 Hz, m).

Files are ``inertial/a{A}_s{S}_t{T}_inertial.mat`` (variable ``d_iner``, (N, 6)) and
``skeleton/a{A}_s{S}_t{T}_skeleton.mat`` (variable ``d_skel``, (20, 3, F)); the official
folder names ``Inertial/`` and ``Skeleton/`` are accepted too. The two modalities are paired
by their (action, subject, trial) key parsed from the file name, never by file order.

The streams share no timestamps and do not span exactly the same time (their length ratio
varies from trial to trial), so the loader keeps each at its own rate; preprocessing aligns
them on each trial's normalised time axis (see :mod:`xtinyhar.preprocess.resample`).

Reference: C. Chen, R. Jafari, N. Kehtarnavaz, "UTD-MHAD: A multimodal dataset for human
action recognition utilizing a depth camera and a wearable inertial sensor", ICIP 2015.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import scipy.io

from xtinyhar.data.trial import LoadReport, Trial, check_array, warn_if_silent
from xtinyhar.errors import DataError

log = logging.getLogger(__name__)

UTD_MHAD_CLASSES = (
    "right_arm_swipe_left", "right_arm_swipe_right", "right_hand_wave",
    "two_hand_front_clap", "right_arm_throw", "cross_arms_in_chest", "basketball_shoot",
    "right_hand_draw_x", "right_hand_draw_circle_clockwise",
    "right_hand_draw_circle_counter_clockwise", "draw_triangle", "bowling",
    "front_boxing", "baseball_swing_from_right", "tennis_right_hand_forehand_swing",
    "arm_curl_two_arms", "tennis_serve", "two_hand_push", "right_hand_knock_on_door",
    "right_hand_catch_an_object", "right_hand_pick_up_and_throw",
    "jogging_in_place", "walking_in_place", "sit_to_stand", "stand_to_sit",
    "forward_lunge_left_foot_forward", "squat_two_arms_stretch_out",
)
"""The 27 official action names, a1..a27 in order (label = action number - 1)."""

UTD_MHAD_JOINTS = (
    "head", "shoulder_center", "spine", "hip_center", "left_shoulder", "left_elbow",
    "left_wrist", "left_hand", "right_shoulder", "right_elbow", "right_wrist",
    "right_hand", "left_hip", "left_knee", "left_ankle", "left_foot", "right_hip",
    "right_knee", "right_ankle", "right_foot",
)
"""Kinect v1 joint order of ``d_skel`` (``skeleton/Skeleton_joint_order.txt``)."""

IMU_HZ = 50.0
SKELETON_HZ = 30.0
N_SUBJECTS = 8

_NAME = re.compile(r"^a(\d+)_s(\d+)_t(\d+)_(inertial|skeleton)\.mat$", re.IGNORECASE)


def placement(action: int) -> str:
    """Where the inertial sensor was worn: right wrist for a1-a21, right thigh for a22-a27."""
    return "right_wrist" if action <= 21 else "right_thigh"


def _find_folder(root: Path, name: str) -> Path:
    for candidate in (name, name.capitalize()):
        if (root / candidate).is_dir():
            return root / candidate
    raise DataError(f"{root}: no '{name}/' (or '{name.capitalize()}/') folder; "
                    "data.root must point at the UTD-MHAD folder")


def _index(folder: Path, modality: str) -> dict[tuple[int, int, int], Path]:
    """Map (action, subject, trial) -> file for every .mat file of one modality."""
    found: dict[tuple[int, int, int], Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() != ".mat":
            continue  # e.g. Skeleton_joint_order.txt
        match = _NAME.match(path.name)
        if not match or match.group(4).lower() != modality:
            raise DataError(f"{path}: unexpected file name; expected a<A>_s<S>_t<T>_{modality}.mat")
        action, subject, trial = (int(g) for g in match.groups()[:3])
        if not 1 <= action <= len(UTD_MHAD_CLASSES):
            raise DataError(f"{path}: unknown action a{action}; UTD-MHAD has a1..a{len(UTD_MHAD_CLASSES)}")
        key = (action, subject, trial)
        if key in found:
            raise DataError(f"{path}: the same trial as {found[key].name} (a{action} s{subject} "
                            f"t{trial}); remove one of them")
        found[key] = path
    return found


def _read_mat(path: Path, variable: str) -> np.ndarray:
    """Read one variable from a MATLAB file; any read failure is a one-line DataError."""
    try:
        content = scipy.io.loadmat(str(path), variable_names=[variable])
    except Exception as exc:  # scipy raises many types for corrupt or truncated files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read MATLAB file ({reason})") from None
    if variable not in content:
        raise DataError(f"{path}: no variable '{variable}' in the file")
    return content[variable]


def read_inertial(path: Path) -> np.ndarray:
    """(N, 6) float32: acc x,y,z in g, gyro x,y,z in deg/s."""
    imu = check_array(_read_mat(path, "d_iner"), name="d_iner", source=str(path), ndim=2,
                      trailing=(6,))
    return warn_if_silent(imu, str(path))


def read_skeleton(path: Path) -> np.ndarray:
    """(F, 20, 3) float32 joint positions in metres (stored as (20, 3, F))."""
    raw = np.asarray(_read_mat(path, "d_skel"))
    if raw.ndim != 3 or raw.shape[:2] != (len(UTD_MHAD_JOINTS), 3):
        raise DataError(f"{path}: d_skel has shape {raw.shape}, expected (20, 3, F)")
    return check_array(np.transpose(raw, (2, 0, 1)), name="d_skel", source=str(path), ndim=3,
                       trailing=(len(UTD_MHAD_JOINTS), 3))


def load_utd_mhad_report(root: str | Path, *, with_skeleton: bool = True,
                         subjects: set[int] | None = None, skip_bad: bool = False) -> LoadReport:
    """Load UTD-MHAD trials; with ``skip_bad`` a bad trial is logged and counted, not fatal."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: UTD-MHAD folder not found (set data.root or pass --root)")
    inertial = _index(_find_folder(root, "inertial"), "inertial")
    skeleton = _index(_find_folder(root, "skeleton"), "skeleton") if with_skeleton else {}
    if not inertial:
        raise DataError(f"{root}: no a*_s*_t*_inertial.mat files found")

    keys = sorted(set(inertial) | set(skeleton))
    trials: list[Trial] = []
    skipped: list[str] = []
    for key in keys:
        action, subject, number = key
        if subjects is not None and subject not in subjects:
            continue
        try:
            if key not in inertial:
                raise DataError(f"{skeleton[key]}: no matching inertial file "
                                f"a{action}_s{subject}_t{number}_inertial.mat")
            if with_skeleton and key not in skeleton:
                raise DataError(f"{inertial[key]}: no matching skeleton file "
                                f"a{action}_s{subject}_t{number}_skeleton.mat")
            imu = read_inertial(inertial[key])
            skel = read_skeleton(skeleton[key]) if with_skeleton else None
        except DataError as exc:
            if not skip_bad:
                raise
            log.warning("skipping trial: %s", exc)
            skipped.append(str(exc))
            continue
        trials.append(Trial(
            imu=imu, imu_hz=IMU_HZ, skeleton=skel,
            skeleton_hz=SKELETON_HZ if with_skeleton else None,
            label=action - 1, subject=subject, trial_id=f"a{action}_s{subject}_t{number}",
            dataset="utd-mhad", placement=placement(action)))
    if skipped:
        log.warning("skipped %d bad trial(s) in %s", len(skipped), root)
    if not trials:
        raise DataError(f"{root}: no usable trials")
    return LoadReport(trials, list(UTD_MHAD_CLASSES), skipped)


def load_utd_mhad(root: str | Path, *, with_skeleton: bool = True,
                  subjects: set[int] | None = None,
                  skip_bad: bool = False) -> tuple[list[Trial], list[str]]:
    """Load UTD-MHAD as ``(trials, class_names)``; see :func:`load_utd_mhad_report`."""
    report = load_utd_mhad_report(root, with_skeleton=with_skeleton, subjects=subjects,
                                  skip_bad=skip_bad)
    return report.trials, report.class_names
