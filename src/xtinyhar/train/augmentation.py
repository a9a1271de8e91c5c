"""The training-time augmentation of one batch: the IMU as configured, and the skeleton
cropped, warped, turned and scaled together with it so both streams stay aligned."""

from __future__ import annotations

import dataclasses

import numpy as np

from xtinyhar.config import Config
from xtinyhar.preprocess.augment import (augment as augment_imu, crop_spans, stretch_spans, time_warp,
                                        warp_clocks)
from xtinyhar.train.loop import Arrays


def make_augment(cfg: Config, channel_std: np.ndarray):
    """Training-only augmentation: IMU as configured; skeleton turned about the vertical
    axis by up to the same angle and scaled by the same amount (a differently sized person
    facing slightly away) and cropped and time-warped exactly as the IMU (one time map for
    both streams, so they stay aligned)."""
    aug = cfg.preproc.augment
    if cfg.data.dataset == "custom" and cfg.data.custom.layout != "acc_gyro":
        # rotation and per-sensor scaling act on acc and gyro triples this layout lacks
        aug = dataclasses.replace(aug, rotation_deg=0.0, scale=0.0)

    def apply(batch: Arrays, rng: np.random.Generator) -> Arrays:
        out = dict(batch)
        spans = None
        if "skeleton" in batch and aug.crop > 0:   # one crop for both streams keeps them aligned
            spans = crop_spans(len(batch["imu"]), aug.crop, rng)
            out["skeleton"] = stretch_spans(batch["skeleton"], spans).astype(np.float32)
        clocks = None
        if "skeleton" in batch and aug.time_warp > 0:   # one warp for both streams too
            clocks = warp_clocks(len(batch["imu"]), batch["imu"].shape[1], aug.time_warp, rng)
            out["skeleton"] = time_warp(out["skeleton"], aug.time_warp, rng, clocks).astype(np.float32)
        out["imu"] = augment_imu(batch["imu"], aug, channel_std, rng, spans, clocks)
        if "skeleton" in batch and (aug.rotation_deg > 0 or aug.scale > 0):
            n = len(batch["skeleton"])
            angle = np.deg2rad(rng.uniform(-aug.rotation_deg, aug.rotation_deg, n))
            rot = np.zeros((n, 3, 3))
            rot[:, 0, 0], rot[:, 0, 2], rot[:, 1, 1] = np.cos(angle), np.sin(angle), 1.0
            rot[:, 2, 0], rot[:, 2, 2] = -np.sin(angle), np.cos(angle)
            factor = rng.uniform(1 - aug.scale, 1 + aug.scale, (n, 1, 1, 1))
            out["skeleton"] = (np.einsum("nij,ntkj->ntki", rot, out["skeleton"]) * factor).astype(np.float32)
        return out

    return apply
