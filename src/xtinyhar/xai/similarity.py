"""Teacher-student attention similarity: how much of the teacher's attention over the IMU
signal the student shows. Each side's attention rollout is restricted to its IMU tokens
(the teacher's skeleton tokens removed, rows renormalised), turned into a relevance curve
over the window's time axis (tokens of any width land on one axis), and compared by cosine
similarity per window; means per class and overall."""

from __future__ import annotations

import numpy as np
import torch

from xtinyhar.xai.rollout import attention_rollout, relevance_over_time


def imu_time_relevance(maps: list[torch.Tensor], mask: torch.Tensor, patch_len: np.ndarray,
                       window: int, first_imu_token: int = 0) -> np.ndarray:
    """(B, window) relevance of each sample from the rollout over IMU tokens only."""
    imu_maps = [m[:, :, first_imu_token:, first_imu_token:] for m in maps]
    rollout = attention_rollout(imu_maps, mask)
    return relevance_over_time(rollout.relevance, patch_len, window)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (B, T) arrays."""
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return num / np.maximum(den, 1e-12)


@torch.no_grad()
def attention_similarity(student, teacher, imu: np.ndarray, skeleton: np.ndarray,
                         labels: np.ndarray, class_names: list[str]) -> dict:
    """Cosine similarity of student and teacher IMU-time relevance on the same windows."""
    x = torch.from_numpy(np.asarray(imu, dtype=np.float32))
    s = torch.from_numpy(np.asarray(skeleton, dtype=np.float32))
    student.eval(), teacher.eval()
    _, s_maps = student(x, return_attention=True)
    _, s_mask, _ = student.tokenizer(x)
    _, t_maps = teacher(x, s, return_attention=True)
    _, t_mask, _ = teacher.imu(x)
    window = x.shape[1]
    s_len = student.tokenizer.patcher.patch_length(x).numpy()
    t_len = teacher.imu.patcher.patch_length(x).numpy()
    student_curve = imu_time_relevance(s_maps, s_mask, s_len, window)
    teacher_curve = imu_time_relevance(t_maps, t_mask, t_len, window, teacher.n_skeleton_tokens)
    sims = cosine(student_curve, teacher_curve)
    per_class = {class_names[k]: float(sims[labels == k].mean()) for k in np.unique(labels)}
    return {"mean": float(sims.mean()), "std": float(sims.std()), "windows": int(len(sims)),
            "per_class": per_class, "per_window": sims}
