"""A seeded synthetic HAR dataset of physically consistent skeleton + wrist IMU trials.

Why: tests, tutorials and CI need a dataset that is always there, costs no download, and
behaves like the real thing: a model must be able to learn it from the IMU alone and from
the skeleton alone, and both modalities must describe the *same* motion, or distillation
from a skeleton-aware teacher into an IMU student means nothing.

What: each class is a parametric motion of a 20-joint Kinect v1 skeleton (joint angles as
smooth functions of time, pushed through a kinematic chain). The IMU is not drawn at
random: it is computed from that motion, as a real wrist sensor would measure it.

- Accelerometer: specific force ``f = a - g`` of the sensor (the right wrist), where ``a``
  is the second time derivative of its position and ``g = (0, -9.81, 0)`` m/s^2 in the
  y-up world. A still sensor therefore reads 1 g pointing up, a falling one reads 0. ``f``
  is expressed in the sensor frame (which turns with the forearm) and divided by 9.81.
- Gyroscope: angular velocity of the sensor frame ``R(t)`` (columns = sensor axes in the
  world), from ``R^T dR/dt = [omega]_x``, i.e. in the sensor frame, in deg/s.

Sensor axes: x along the forearm toward the hand, y forward and z outward (away from the
body) when the arm hangs at rest. Hanging arm, still: acc = (-1, 0, 0) g.

Subjects differ as wearers of a real band do, so that a model evaluated on subjects it
never saw does worse than on the ones it trained on:

- placement: each subject wears the band turned about the forearm (a roll of N(0, 30)
  degrees, within +-60) and tilted by a few degrees; one fixed rotation of the sensor
  frame, so acc and gyro turn together. The skeleton does not see it.
- tempo U(0.7, 1.4) and range of motion N(1, 0.2) multiply every class's base values.
- offsets: accelerometer bias N(0, 0.04) g and gyroscope bias N(0, 3) deg/s per axis.
- noise: white sensor noise of 0.03 g and 3 deg/s, times a per-subject factor U(0.6, 1.4).

Derivatives are taken numerically on a fine time grid (at least 200 Hz and 4x the IMU
rate) over a smooth trajectory, then sampled at the requested IMU rate; sensor noise and
bias are added after differentiation so they are not amplified.

Classes (right-handed; base tempo, scaled per subject and trial), in pairs of similar
motions: arm_raise (straight arm up sideways and down, 0.35 Hz) and front_raise (the same,
forward, 0.35 Hz); arm_circle (outstretched arm drawing circles, 0.7 Hz) and wave (forearm
up, swung about the upper arm, 1.4 Hz); punch (guard, fast straight punch, 0.9 Hz) and
uppercut (guard, fist driven up, 0.9 Hz); curl (upper arm hanging, elbow bent and
straightened, 0.5 Hz) and drink (hand brought to the mouth and back, 0.3 Hz); squat (arms
held level in front, 0.35 Hz); walk (toward the camera, arms swinging, 0.9 strides/s) and
jog (elbows bent, faster, bigger swing, 1.2 strides/s).

World frame (like Kinect's camera space): metres, y up, z = depth away from the camera
(the subject stands 2.5-3 m away), the subject faces the camera (-z), so the subject's
right is +x.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from xtinyhar.data.trial import Trial
from xtinyhar.errors import ConfigError, XTinyHARError

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "arm_raise", "front_raise", "arm_circle", "wave", "punch", "uppercut",
    "curl", "drink", "squat", "walk", "jog",
)

JOINT_NAMES: tuple[str, ...] = (
    "head", "shoulder_center", "spine", "hip_center",
    "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot",
    "right_hip", "right_knee", "right_ankle", "right_foot",
)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}

GRAVITY_MS2 = 9.81
GRAVITY = np.array([0.0, -GRAVITY_MS2, 0.0])   # world y is up
SENSOR_PLACEMENT = "right_wrist"
ACC_NOISE_G = 0.03        # white sensor noise of a typical subject (times U(0.6, 1.4))
GYRO_NOISE_DPS = 3.0

_FINE_HZ = 200.0          # grid the derivatives are taken on (error < 0.002 g vs 2 kHz)
_PAD_S = 0.1              # extra time at both ends so np.gradient's edges are never used
_CAMERA_HEIGHT_M = 0.8    # Kinect sits ~0.8 m above the floor: floor is at y = -0.8

# Sensor axes in forearm coordinates (columns): x along the forearm toward the hand,
# y forward when the arm hangs at rest, z = x cross y (outward, away from the body).
_FOREARM_TO_SENSOR = np.array([[0.0, 0.0, 1.0],
                               [-1.0, 0.0, 0.0],
                               [0.0, -1.0, 0.0]])

_ANGLE_DOFS = ("torso_pitch",
               "r_abd", "r_flex", "r_twist", "r_elbow", "r_pron",
               "l_abd", "l_flex", "l_twist", "l_elbow", "l_pron",
               "r_hip", "r_knee", "l_hip", "l_knee")
# Resting posture in degrees: arms hang slightly away from the body, elbows a bit bent.
_REST_DEG = {"r_abd": 6.0, "l_abd": 6.0, "r_elbow": 12.0, "l_elbow": 12.0,
             "r_flex": 3.0, "l_flex": 3.0}


# --------------------------------------------------------------------------- physics

def imu_from_trajectory(times: np.ndarray, position: np.ndarray,
                        rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ideal IMU readings of a sensor moving along ``position`` with orientation ``rotation``.

    times: (N,) uniformly spaced seconds; position: (N, 3) metres in the y-up world;
    rotation: (N, 3, 3) whose columns are the sensor axes in world coordinates.
    Returns ``(acc, gyro)``, both (N, 3) in the sensor frame: acc is the specific force
    ``(d2p/dt2 - g) / 9.81`` in g (1 g up when still), gyro the angular velocity from
    ``R^T dR/dt`` in deg/s. Samples near the two ends use one-sided differences and are
    less accurate; callers pad the grid and drop them.
    """
    times = np.asarray(times, dtype=float)
    dt = float(times[1] - times[0])
    velocity = np.gradient(position, dt, axis=0, edge_order=2)
    acceleration = np.gradient(velocity, dt, axis=0, edge_order=2)
    specific_force = acceleration - GRAVITY                               # (N, 3) world
    acc = np.einsum("nji,nj->ni", rotation, specific_force) / GRAVITY_MS2  # R^T f
    rotation_rate = np.gradient(rotation, dt, axis=0, edge_order=2)

    def skew(i: int, j: int) -> np.ndarray:   # entry (i, j) of R^T dR/dt
        return np.sum(rotation[:, :, i] * rotation_rate[:, :, j], axis=1)

    # R^T dR/dt is skew-symmetric up to differentiation error: average its two halves.
    omega = 0.5 * np.stack([skew(2, 1) - skew(1, 2), skew(0, 2) - skew(2, 0),
                            skew(1, 0) - skew(0, 1)], axis=1)
    return acc, np.degrees(omega)


# Inside this module, a stack of N rotations is stored as (3, 3, N), time last: numpy
# multiplies thousands of 3x3 matrices ~5x faster that way than as (N, 3, 3).

def _rotation(axis: int, angle: np.ndarray | float) -> np.ndarray:
    """Rotations (3, 3, ...) about axis 0=x, 1=y, 2=z by ``angle`` radians (scalar or (N,))."""
    angle = np.asarray(angle, dtype=float)
    c, s = np.cos(angle), np.sin(angle)
    i, j = ((1, 2), (2, 0), (0, 1))[axis]
    out = np.zeros((3, 3) + angle.shape)
    out[axis, axis] = 1.0
    out[i, i] = c
    out[j, j] = c
    out[i, j] = -s
    out[j, i] = s
    return out


def _compose(*rotations: np.ndarray) -> np.ndarray:
    """Matrix product of rotations, each (3, 3) or (3, 3, N), left to right."""
    out = rotations[0]
    for rotation in rotations[1:]:
        out = np.einsum("ik...,kj...->ij...", out, rotation)
    return out


def _rotate(rotation: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Apply rotations (3, 3, N) to one fixed vector (3,); gives (N, 3)."""
    return np.einsum("ijn,j->ni", rotation, vector)


# --------------------------------------------------------------------------- bodies

@dataclass(frozen=True)
class Body:
    """Segment lengths and joint offsets of one subject, in metres (a 1.7 m adult at 1.0)."""

    hip_height: float        # hip_center above the floor when standing
    spine: float             # hip_center -> spine
    shoulder_center: float   # hip_center -> shoulder_center
    head: float              # hip_center -> head
    shoulder_height: float   # hip_center -> left/right shoulder (vertical)
    shoulder_half_width: float
    hip_half_width: float
    hip_drop: float          # hip_center -> left/right hip (vertical, downward)
    upper_arm: float
    forearm: float
    hand: float
    thigh: float
    shank: float
    foot_forward: float
    foot_drop: float


@dataclass(frozen=True)
class SubjectStyle:
    """How one subject moves and wears the sensor; drawn once per subject."""

    body: Body
    tempo: float            # multiplies every class's base frequency
    amplitude: float        # multiplies every class's range of motion
    noise: float            # multiplies the sensor and skeleton noise levels
    acc_bias_g: np.ndarray  # (3,) accelerometer offset
    gyro_bias_dps: np.ndarray  # (3,) gyroscope offset
    mount: np.ndarray       # (3, 3) how the band sits on this subject's wrist


def _draw_body(rng: np.random.Generator) -> Body:
    """A 1.7 m body scaled by U(0.9, 1.1), each segment jittered by about +-4%."""
    scale = rng.uniform(0.9, 1.1)

    def seg(length: float) -> float:
        return float(length * scale * rng.normal(1.0, 0.04))

    thigh, shank, foot_drop = seg(0.43), seg(0.43), seg(0.08)
    return Body(hip_height=thigh + shank + foot_drop + 0.05 * scale,
                spine=seg(0.18), shoulder_center=seg(0.45), head=seg(0.62),
                shoulder_height=seg(0.42), shoulder_half_width=seg(0.19),
                hip_half_width=seg(0.09), hip_drop=0.05 * scale,
                upper_arm=seg(0.29), forearm=seg(0.26), hand=seg(0.08),
                thigh=thigh, shank=shank, foot_forward=seg(0.12), foot_drop=foot_drop * 0.6)


def _draw_subject(rng: np.random.Generator) -> SubjectStyle:
    """Body, tempo, amplitude, noise, sensor bias and sensor placement of one subject.

    The placement is a roll about the forearm (sensor x) of N(0, 30) degrees within +-60
    (how far round the wrist the band sits) and a tilt of N(0, 5) degrees about the two
    other axes; it turns the whole sensor frame, acc and gyro alike."""
    body = _draw_body(rng)
    roll = float(np.clip(rng.normal(0.0, 30.0), -60.0, 60.0))
    tilt = rng.normal(0.0, 5.0, size=2)
    mount = _compose(_rotation(0, np.radians(roll)), _rotation(1, np.radians(tilt[0])),
                     _rotation(2, np.radians(tilt[1])))
    return SubjectStyle(body=body, tempo=rng.uniform(0.7, 1.4),
                        amplitude=float(np.clip(rng.normal(1.0, 0.2), 0.65, 1.4)),
                        noise=rng.uniform(0.6, 1.4),
                        acc_bias_g=rng.normal(0.0, 0.04, size=3),
                        gyro_bias_dps=rng.normal(0.0, 3.0, size=3), mount=mount)


# --------------------------------------------------------------------------- classes
# Each class maps (t seconds, f Hz, phase rad, amp, duration s) to joint angles in degrees
# (keys of _ANGLE_DOFS, arrays or constants; missing keys keep the rest posture) and
# optionally "root", a (N, 3) hip_center displacement in metres in the body frame
# (x right, y up, z back).
# Arm convention (right arm; the left is its mirror): abd raises the arm sideways,
# flex raises it forward, twist turns it about its own axis, elbow bends the forearm
# forward, pron turns the forearm about its own axis.

Motion = dict[str, np.ndarray]


def _raised_cosine(u: np.ndarray) -> np.ndarray:
    """0 -> 1 -> 0 once per cycle of ``u`` (radians), smooth everywhere."""
    return 0.5 * (1.0 - np.cos(u))


def _arm_raise(t: np.ndarray, f: float, phase: float, amp: float, duration: float
        ) -> Motion:
    """Straight right arm raised sideways to above the shoulder and lowered, ~0.35 Hz."""
    u = 2 * np.pi * f * t + phase
    return {"r_abd": 10.0 + min(140.0 * amp, 160.0) * _raised_cosine(u),
            "r_flex": 8.0, "r_elbow": 8.0}


def _front_raise(t: np.ndarray, f: float, phase: float, amp: float, duration: float
        ) -> Motion:
    """Straight right arm raised forward to shoulder height and lowered, ~0.35 Hz."""
    u = 2 * np.pi * f * t + phase
    return {"r_abd": 8.0, "r_flex": 5.0 + min(95.0 * amp, 150.0) * _raised_cosine(u),
            "r_elbow": 8.0}


def _arm_circle(t: np.ndarray, f: float, phase: float, amp: float, duration: float
        ) -> Motion:
    """Straight right arm held out to the side, its hand drawing circles, ~0.7 Hz."""
    u = 2 * np.pi * f * t + phase
    radius = 30.0 * amp
    return {"r_abd": 85.0 + radius * np.cos(u), "r_flex": 10.0 + radius * np.sin(u),
            "r_elbow": 6.0}


def _wave(t: np.ndarray, f: float, phase: float, amp: float, duration: float
        ) -> Motion:
    """Upper arm out to the side, forearm up, swung side to side, ~1.4 Hz."""
    u = 2 * np.pi * f * t + phase
    return {"r_abd": 85.0, "r_flex": 10.0,
            "r_twist": -90.0 + 25.0 * amp * np.sin(u),
            "r_elbow": 95.0 + 8.0 * np.sin(u + 0.5)}


def _punch(t: np.ndarray, f: float, phase: float, amp: float, duration: float
        ) -> Motion:
    """Boxing guard, right fist thrown straight forward and pulled back, ~0.9 Hz."""
    u = 2 * np.pi * f * t + phase
    strike = _raised_cosine(u) ** 2          # quick out and back, a pause in guard
    reach = min(amp, 1.05)
    return {"r_abd": 15.0, "r_flex": 35.0 + 50.0 * reach * strike,
            "r_elbow": 115.0 - 105.0 * reach * strike, "r_pron": -60.0 * strike,
            "l_abd": 15.0, "l_flex": 35.0, "l_elbow": 115.0}


def _uppercut(t: np.ndarray, f: float, phase: float, amp: float, duration: float
        ) -> Motion:
    """Boxing guard, right fist driven upward (elbow stays bent) and back, ~0.9 Hz."""
    u = 2 * np.pi * f * t + phase
    strike = _raised_cosine(u) ** 2
    reach = min(amp, 1.1)
    return {"r_abd": 15.0, "r_flex": 35.0 + 65.0 * reach * strike,
            "r_elbow": 115.0 - 30.0 * reach * strike, "r_pron": 35.0 * strike,
            "l_abd": 15.0, "l_flex": 35.0, "l_elbow": 115.0}


def _curl(t: np.ndarray, f: float, phase: float, amp: float, duration: float
        ) -> Motion:
    """Biceps curl: upper arm hanging, the elbow bent to ~130 degrees and straightened, ~0.5 Hz."""
    u = 2 * np.pi * f * t + phase
    return {"r_abd": 6.0, "r_flex": 5.0,
            "r_elbow": 10.0 + min(120.0 * amp, 140.0) * _raised_cosine(u), "r_pron": -20.0}


def _drink(t: np.ndarray, f: float, phase: float, amp: float, duration: float
        ) -> Motion:
    """Hand brought to the mouth (upper arm forward, elbow bent, forearm turned) and back, ~0.3 Hz."""
    u = 2 * np.pi * f * t + phase
    lift = _raised_cosine(u)
    return {"r_abd": 10.0 + 15.0 * lift, "r_flex": 5.0 + 35.0 * amp * lift,
            "r_elbow": 15.0 + min(115.0 * amp, 140.0) * lift, "r_pron": -50.0 * lift}


def _squat(t: np.ndarray, f: float, phase: float, amp: float, duration: float
        ) -> Motion:
    """Squat with both arms held forward and level while the torso leans, ~0.35 Hz.

    At the bottom the thighs are near horizontal, the shanks tilt forward by ~0.45 of the
    hip angle and the torso leans as much; the root is moved so the ankles stay on the
    floor. The arms counter the lean (arm pitch = flex - lean), so the forearm barely
    rotates: the wrist IMU sees mostly up-down acceleration and little angular rate.
    """
    u = 2 * np.pi * f * t + phase
    hip = min(80.0 * amp, 95.0) * _raised_cosine(u)
    lean = 0.45 * hip
    arm = {"abd": 5.0, "flex": 90.0 + lean, "elbow": 6.0}
    motion = {"torso_pitch": lean, "r_hip": hip, "l_hip": hip, "r_knee": 1.45 * hip,
              "l_knee": 1.45 * hip}
    motion.update({f"{side}_{k}": v for side in "rl" for k, v in arm.items()})
    return motion


def _gait(t: np.ndarray, f: float, phase: float, amp: float, duration: float,
          jog: bool) -> Motion:
    """Walking (or jogging) toward the camera: legs swing, arms swing opposite, body bobs.

    ``f`` is the stride frequency (one left and one right step per cycle). A jog bends the
    elbows to ~80 degrees, swings arms and legs further and bobs more.
    """
    u = 2 * np.pi * f * t + phase
    legs, arms, bob, elbow = (28.0, 24.0, 0.04, 80.0) if jog else (22.0, 18.0, 0.02, 20.0)
    swing = legs * amp * np.sin(u)
    arm_swing = arms * amp * np.sin(u)
    knee_r = 5.0 + (60.0 if jog else 40.0) * amp * _raised_cosine(u + np.pi) ** 2
    knee_l = 5.0 + (60.0 if jog else 40.0) * amp * _raised_cosine(u) ** 2
    speed = 0.3 * f / 0.9   # m/s, toward the camera (-z), centred on the start spot
    root = np.stack([0.015 * np.sin(u), bob * np.cos(2 * u) - bob,
                     -speed * (t - duration / 2)], axis=1)
    return {"r_hip": swing, "l_hip": -swing, "r_knee": knee_r, "l_knee": knee_l,
            "r_flex": -arm_swing, "l_flex": arm_swing,
            "r_elbow": elbow + 10.0 * _raised_cosine(u),
            "l_elbow": elbow + 10.0 * _raised_cosine(u + np.pi),
            "r_abd": 8.0, "l_abd": 8.0, "root": root}


def _walk(t: np.ndarray, f: float, phase: float, amp: float, duration: float) -> Motion:
    """Walking slowly toward the camera, ~0.9 strides/s."""
    return _gait(t, f, phase, amp, duration, jog=False)


def _jog(t: np.ndarray, f: float, phase: float, amp: float, duration: float) -> Motion:
    """Jogging toward the camera, elbows bent, ~1.2 strides/s."""
    return _gait(t, f, phase, amp, duration, jog=True)


_CLASS_MOTIONS: dict[str, tuple[Callable[..., Motion], float, bool]] = {
    # name: (motion function, base frequency in Hz, feet stay planted)
    "arm_raise": (_arm_raise, 0.35, False),
    "front_raise": (_front_raise, 0.35, False),
    "arm_circle": (_arm_circle, 0.7, False),
    "wave": (_wave, 1.4, False),
    "punch": (_punch, 0.9, False),
    "uppercut": (_uppercut, 0.9, False),
    "curl": (_curl, 0.5, False),
    "drink": (_drink, 0.3, False),
    "squat": (_squat, 0.35, True),
    "walk": (_walk, 0.9, False),
    "jog": (_jog, 1.2, False),
}


# --------------------------------------------------------------------------- kinematics

_DOWN = np.array([0.0, -1.0, 0.0])
_UP = np.array([0.0, 1.0, 0.0])


def _trunk(motion: Motion, body: Body) -> tuple[np.ndarray, np.ndarray]:
    """hip_center (N, 3) in the body frame and the torso rotation (3, 3, N).

    Body frame: x right, y up, z back (the subject faces -z), floor at y = 0.
    ``torso_pitch`` leans the upper body forward about the hips.
    """
    hip_center = np.array([0.0, body.hip_height, 0.0]) + motion["root"]
    return hip_center, _rotation(0, -motion["torso_pitch"])


def _shoulder(hip_center: np.ndarray, torso: np.ndarray, body: Body, side: str) -> np.ndarray:
    """Shoulder position (N, 3) of ``side`` ("r" or "l"), carried by the torso."""
    mirror = 1.0 if side == "r" else -1.0
    offset = np.array([mirror * body.shoulder_half_width, body.shoulder_height, 0.0])
    return hip_center + _rotate(torso, offset)


def _arm(shoulder: np.ndarray, torso: np.ndarray, body: Body, motion: Motion,
         side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Elbow, wrist, hand positions (N, 3) and forearm rotation (3, 3, N) of one arm.

    The arm hangs along -y at rest. Shoulder rotation ``Rz(abd) Rx(flex) Ry(twist)``, elbow
    ``Rx(elbow)``, forearm roll ``Ry(pron)``; the left arm mirrors the right (x -> -x flips
    the sign of the z and y rotations).
    """
    mirror = 1.0 if side == "r" else -1.0
    shoulder_rot = _compose(torso, _rotation(2, mirror * motion[f"{side}_abd"]),
                            _rotation(0, motion[f"{side}_flex"]),
                            _rotation(1, mirror * motion[f"{side}_twist"]))
    forearm_rot = _compose(shoulder_rot, _rotation(0, motion[f"{side}_elbow"]),
                           _rotation(1, mirror * motion[f"{side}_pron"]))
    elbow = shoulder + body.upper_arm * _rotate(shoulder_rot, _DOWN)
    forearm_dir = _rotate(forearm_rot, _DOWN)
    wrist = elbow + body.forearm * forearm_dir
    hand = wrist + body.hand * forearm_dir
    return elbow, wrist, hand, forearm_rot


def _leg_offsets(body: Body, hip_angle: np.ndarray,
                 knee_angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knee and ankle (N, 3) relative to the hip: thigh swung forward, shank bent back."""
    zero = np.zeros_like(hip_angle)
    shank_angle = hip_angle - knee_angle
    knee = body.thigh * np.stack([zero, -np.cos(hip_angle), -np.sin(hip_angle)], axis=1)
    ankle = knee + body.shank * np.stack([zero, -np.cos(shank_angle), -np.sin(shank_angle)],
                                         axis=1)
    return knee, ankle


def _to_camera(points: np.ndarray, yaw: float, origin: np.ndarray) -> np.ndarray:
    """Body-frame points (..., 3) turned by ``yaw`` about the vertical, moved to ``origin``."""
    turn = _rotation(1, yaw)
    flat = points.reshape(-1, 3) @ turn.T + origin
    return flat.reshape(points.shape)


def _sensor_track(motion: Motion, body: Body, yaw: float, origin: np.ndarray,
                  mount: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right-wrist position (N, 3) and sensor axes (N, 3, 3) (columns = sensor x, y, z),
    both in the camera frame.

    Only the chain that carries the sensor (root, torso, right arm) is evaluated: this runs
    on the fine grid, where the whole skeleton would be wasted work.
    """
    hip_center, torso = _trunk(motion, body)
    shoulder = _shoulder(hip_center, torso, body, "r")
    _, wrist, _, forearm_rot = _arm(shoulder, torso, body, motion, "r")
    sensor_axes = _compose(_rotation(1, yaw), forearm_rot, _FOREARM_TO_SENSOR @ mount)
    return _to_camera(wrist, yaw, origin), np.moveaxis(sensor_axes, -1, 0)


def _skeleton(motion: Motion, body: Body, yaw: float, origin: np.ndarray) -> np.ndarray:
    """All 20 joint positions (N, 20, 3) in metres in the camera frame (order JOINT_NAMES)."""
    hip_center, torso = _trunk(motion, body)
    joints = np.empty((hip_center.shape[0], len(JOINT_NAMES), 3))
    J = JOINT_INDEX
    joints[:, J["hip_center"]] = hip_center
    joints[:, J["spine"]] = hip_center + body.spine * _rotate(torso, _UP)
    joints[:, J["shoulder_center"]] = hip_center + body.shoulder_center * _rotate(torso, _UP)
    joints[:, J["head"]] = hip_center + body.head * _rotate(torso, _UP)
    for side, name in (("r", "right"), ("l", "left")):
        shoulder = _shoulder(hip_center, torso, body, side)
        elbow, wrist, hand, _ = _arm(shoulder, torso, body, motion, side)
        joints[:, J[f"{name}_shoulder"]] = shoulder
        joints[:, J[f"{name}_elbow"]] = elbow
        joints[:, J[f"{name}_wrist"]] = wrist
        joints[:, J[f"{name}_hand"]] = hand
        mirror = 1.0 if side == "r" else -1.0
        hip = hip_center + np.array([mirror * body.hip_half_width, -body.hip_drop, 0.0])
        knee, ankle = _leg_offsets(body, motion[f"{side}_hip"], motion[f"{side}_knee"])
        joints[:, J[f"{name}_hip"]] = hip
        joints[:, J[f"{name}_knee"]] = hip + knee
        joints[:, J[f"{name}_ankle"]] = hip + ankle
        joints[:, J[f"{name}_foot"]] = hip + ankle + np.array(
            [0.0, -body.foot_drop, -body.foot_forward])
    return _to_camera(joints, yaw, origin)


# --------------------------------------------------------------------------- trials

@dataclass(frozen=True)
class _TrialStyle:
    """Per-trial draws: duration, tempo, amplitude, phase, placement, sway."""

    duration: float
    frequency: float
    amplitude: float
    phase: float
    yaw: float
    origin: np.ndarray
    sway_amp: np.ndarray    # (dofs, 2) degrees
    sway_freq: np.ndarray   # (dofs, 2) Hz
    sway_phase: np.ndarray  # (dofs, 2) radians


def _draw_trial(rng: np.random.Generator, person: SubjectStyle, base_hz: float,
                seconds: float) -> _TrialStyle:
    """Small trial-to-trial changes on top of the subject's style."""
    shape = (len(_ANGLE_DOFS), 2)   # two slow sinusoids of sway per joint angle
    return _TrialStyle(
        duration=seconds * rng.uniform(0.8, 1.2),
        frequency=base_hz * person.tempo * rng.normal(1.0, 0.05),
        amplitude=person.amplitude * rng.normal(1.0, 0.07),
        phase=rng.uniform(0.0, 2 * np.pi),
        yaw=np.radians(rng.uniform(-15.0, 15.0)),
        origin=np.array([rng.uniform(-0.25, 0.25), -_CAMERA_HEIGHT_M, rng.uniform(2.5, 3.0)]),
        sway_amp=rng.normal(0.0, 3.0, size=shape),
        sway_freq=rng.uniform(0.1, 0.7, size=shape),
        sway_phase=rng.uniform(0.0, 2 * np.pi, size=shape),
    )


_SENSOR_DOFS = ("torso_pitch", "r_abd", "r_flex", "r_twist", "r_elbow", "r_pron",
                "r_hip", "r_knee", "l_hip", "l_knee")   # legs: a squat's root follows them


def _motion(class_name: str, times: np.ndarray, style: _TrialStyle, body: Body,
            dofs: tuple[str, ...] = _ANGLE_DOFS) -> Motion:
    """Angles (radians) of ``dofs`` and the root (metres) at ``times``.

    Class motion on top of the rest posture, plus a slow, small, smooth sway of every joint
    (people never hold a pose exactly). For classes that keep their feet planted, the root
    is lowered and shifted so the ankles stay where they stand at rest.
    """
    function, _, feet_planted = _CLASS_MOTIONS[class_name]
    degrees = function(times, style.frequency, style.phase, style.amplitude, style.duration)
    rows = [_ANGLE_DOFS.index(dof) for dof in dofs]
    waves = np.sin(2 * np.pi * style.sway_freq[rows] * times[:, None, None]
                   + style.sway_phase[rows])                              # (N, dofs, 2)
    sway = np.sum(waves * style.sway_amp[rows], axis=2)                   # (N, dofs) degrees
    motion: Motion = {}
    for column, dof in enumerate(dofs):
        base = degrees.get(dof, _REST_DEG.get(dof, 0.0))
        motion[dof] = np.radians(base + sway[:, column])
    root = degrees.get("root", np.zeros((times.size, 3)))
    if feet_planted:
        _, ankle_r = _leg_offsets(body, motion["r_hip"], motion["r_knee"])
        _, ankle_l = _leg_offsets(body, motion["l_hip"], motion["l_knee"])
        rest = np.array([0.0, -(body.thigh + body.shank), 0.0])
        root = root + rest - 0.5 * (ankle_r + ankle_l)
    motion["root"] = root
    return motion


def _sample(values: np.ndarray, start: float, rate: float, times: np.ndarray) -> np.ndarray:
    """Values (N, ...) sampled at ``start + i / rate``, linearly interpolated at ``times``."""
    position = (times - start) * rate
    left = np.clip(np.floor(position).astype(int), 0, values.shape[0] - 2)
    weight = (position - left).reshape((-1,) + (1,) * (values.ndim - 1))
    return (1.0 - weight) * values[left] + weight * values[left + 1]


def _make_trial(class_name: str, label: int, subject: int, trial_number: int,
                person: SubjectStyle, rng: np.random.Generator, seconds: float,
                imu_hz: float, skeleton_hz: float) -> Trial:
    """One trial: sensor path on a fine grid -> ideal IMU -> resampled + noise; skeleton."""
    style = _draw_trial(rng, person, _CLASS_MOTIONS[class_name][1], seconds)
    body = person.body
    fine_hz = max(_FINE_HZ, 4.0 * imu_hz)
    n_fine = int(np.ceil((style.duration + 2 * _PAD_S) * fine_hz)) + 1
    fine_times = -_PAD_S + np.arange(n_fine) / fine_hz
    motion = _motion(class_name, fine_times, style, body, _SENSOR_DOFS)
    wrist, sensor_axes = _sensor_track(motion, body, style.yaw, style.origin, person.mount)
    acc, gyro = imu_from_trajectory(fine_times, wrist, sensor_axes)

    imu_times = np.arange(max(int(style.duration * imu_hz), 2)) / imu_hz
    imu = _sample(np.concatenate([acc, gyro], axis=1), -_PAD_S, fine_hz, imu_times)
    size = (imu_times.size, 3)
    imu[:, :3] += person.acc_bias_g + rng.normal(0.0, ACC_NOISE_G * person.noise, size)
    imu[:, 3:] += person.gyro_bias_dps + rng.normal(0.0, GYRO_NOISE_DPS * person.noise, size)

    skeleton_times = np.arange(max(int(style.duration * skeleton_hz), 2)) / skeleton_hz
    skeleton = _skeleton(_motion(class_name, skeleton_times, style, body), body,
                         style.yaw, style.origin)
    skeleton += rng.normal(0.0, 0.005 * person.noise, skeleton.shape)

    return Trial(imu=imu.astype(np.float32), imu_hz=float(imu_hz),
                 skeleton=skeleton.astype(np.float32), skeleton_hz=float(skeleton_hz),
                 label=label, subject=subject,
                 trial_id=f"c{label + 1}_s{subject}_t{trial_number}",
                 dataset="synthetic", placement=SENSOR_PLACEMENT)


def _check_arguments(subjects: int, trials_per_class: int, seconds: float, imu_hz: float,
                     skeleton_hz: float, seed: int) -> None:
    """Raise ConfigError, naming the argument, for values that cannot make a dataset."""
    for name, value in (("subjects", subjects), ("trials_per_class", trials_per_class),
                        ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"synthetic: {name} must be an integer, got {value!r}")
    if subjects < 1 or trials_per_class < 1:
        raise ConfigError(f"synthetic: subjects ({subjects}) and trials_per_class "
                          f"({trials_per_class}) must be at least 1")
    if seed < 0:
        raise ConfigError(f"synthetic: seed must be >= 0, got {seed}")
    for name, value in (("seconds", seconds), ("imu_hz", imu_hz),
                        ("skeleton_hz", skeleton_hz)):
        if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                or not np.isfinite(value) or value <= 0):
            raise ConfigError(f"synthetic: {name} must be a positive number, got {value!r}")
    if seconds * 0.8 * min(imu_hz, skeleton_hz) < 2:
        raise ConfigError(f"synthetic: seconds={seconds} is too short for 2 samples at "
                          f"{min(imu_hz, skeleton_hz)} Hz; use a longer trial")


def generate_synthetic(subjects: int = 8, trials_per_class: int = 4, seconds: float = 4.0,
                       imu_hz: float = 50.0, skeleton_hz: float = 30.0, seed: int = 0
                       ) -> tuple[list[Trial], list[str]]:
    """Make ``subjects x len(SYNTHETIC_CLASSES) x trials_per_class`` synthetic trials.

    Each trial lasts ``seconds * U(0.8, 1.2)``; its IMU (T, 6) = acc x, y, z in g then gyro
    x, y, z in deg/s from a sensor on the right wrist at ``imu_hz``; its skeleton
    (F, 20, 3) in metres at ``skeleton_hz`` (joint order ``JOINT_NAMES``). Subjects differ
    in body size, tempo, range of motion, noise level, sensor bias and how the sensor sits;
    trials differ in duration, tempo, amplitude, phase, position and sway.

    Every trial draws from its own generator seeded by (seed, subject, class, trial), so
    the result is bit-for-bit reproducible, and subject 3 is the same whether you ask for
    8 subjects or 10. Returns the trials (subject, then class, then trial order) and the
    class names that ``Trial.label`` indexes.
    """
    _check_arguments(subjects, trials_per_class, seconds, imu_hz, skeleton_hz, seed)
    class_names = list(SYNTHETIC_CLASSES)
    trials: list[Trial] = []
    for subject in range(1, subjects + 1):
        person = _draw_subject(np.random.default_rng([seed, subject]))
        for label, class_name in enumerate(class_names):
            for number in range(1, trials_per_class + 1):
                rng = np.random.default_rng([seed, subject, label + 1, number])
                trials.append(_make_trial(class_name, label, subject, number, person, rng,
                                          seconds, imu_hz, skeleton_hz))
    return trials, class_names


IMU_CSV_HEADER = ("time_s", "acc_x_g", "acc_y_g", "acc_z_g", "gyro_x_dps", "gyro_y_dps", "gyro_z_dps")


def write_recording(path: str | Path, activity: str, subject: int = 9, trial: int = 1,
                    seconds: float = 4.0, imu_hz: float = 50.0, seed: int = 0) -> Trial:
    """Write one synthetic trial's IMU as a CSV recording (a header row, then one sample per
    row: time in s, acc x, y, z in g, gyro x, y, z in deg/s), the input ``xtinyhar predict``
    and ``xtinyhar stream`` read. ``subject`` 9 is none of the 8 subjects of the default
    set, so a model trained on it has never seen this wearer. Returns the trial."""
    from xtinyhar.io import write_text

    if activity not in SYNTHETIC_CLASSES:
        raise ConfigError(f"synthetic: unknown activity {activity!r}; one of "
                          f"{', '.join(SYNTHETIC_CLASSES)}")
    _check_arguments(subject, trial, seconds, imu_hz, 30.0, seed)
    label = SYNTHETIC_CLASSES.index(activity)
    person = _draw_subject(np.random.default_rng([seed, subject]))
    rng = np.random.default_rng([seed, subject, label + 1, trial])
    made = _make_trial(activity, label, subject, trial, person, rng, seconds, imu_hz, 30.0)
    times = np.arange(len(made.imu)) / imu_hz
    rows = [",".join(IMU_CSV_HEADER)]
    rows += [",".join([f"{t:.4f}"] + [f"{v:.6g}" for v in sample])
             for t, sample in zip(times, made.imu)]
    write_text(path, "\n".join(rows) + "\n")
    return made


def main(argv: list[str] | None = None) -> int:
    """``python -m xtinyhar.data.synthetic --out FILE.csv [--activity A] [--subject S]``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m xtinyhar.data.synthetic",
        description="Write one synthetic IMU recording as a CSV (time_s, acc x,y,z in g, gyro "
                    "x,y,z in deg/s), e.g. as input for `xtinyhar predict`.")
    parser.add_argument("--out", required=True, help="CSV file to write, e.g. demo/wave_s9.csv")
    parser.add_argument("--activity", default="wave", choices=SYNTHETIC_CLASSES,
                        help="the activity performed (default wave)")
    parser.add_argument("--subject", type=int, default=9,
                        help="the wearer (default 9: none of the default set's 8 subjects)")
    parser.add_argument("--trial", type=int, default=1, help="trial number (default 1)")
    parser.add_argument("--seconds", type=float, default=4.0, help="about how long (default 4.0)")
    parser.add_argument("--seed", type=int, default=0, help="data.synthetic.seed of the set (default 0)")
    args = parser.parse_args(argv)
    try:
        made = write_recording(args.out, args.activity, subject=args.subject, trial=args.trial,
                               seconds=args.seconds, seed=args.seed)
    except XTinyHARError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {args.activity}, subject {args.subject}, {len(made.imu)} samples "
          f"at {made.imu_hz:g} Hz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
