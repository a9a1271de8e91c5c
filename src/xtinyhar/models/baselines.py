"""Baselines the student must beat, trained by the same ``cv`` command and exported by the
same code: every one takes the raw IMU window (B, W, C) in physical units and normalises it
inside (training-fold statistics as buffers), exactly like the student.

- ``CNN1D``: four 1-D conv layers of 64 channels, global average pooling; what a
  practitioner tries first.
- ``DeepConvLSTM`` (Ordonez & Roggen, Sensors 2016): four temporal convolutions (64 filters,
  kernel 5) applied to every channel, then two LSTM layers of 128 units; the last time step
  is classified.
- ``TinyHAR`` (Zhou et al., ISWC 2022): per-channel temporal convolutions, self-attention
  across sensor channels at each time step, a fully connected cross-channel fusion, an LSTM
  over time and an attention-weighted temporal aggregation.

Our own implementations from the papers (no code copied). MiniRocket, the strongest
non-deep baseline, lives in :mod:`xtinyhar.models.minirocket` since it is not a torch model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

ARCHS = ("transformer", "cnn1d", "deepconvlstm", "tinyhar")


@dataclass
class BaselineConfig:
    """All a baseline needs to be rebuilt; saved in its checkpoint like the student's."""
    arch: str
    n_classes: int
    window: int = 100
    channels: int = 6
    imu_hz: float = 50.0
    filters: int = 64          # conv channels (CNN1D, DeepConvLSTM); TinyHAR uses tinyhar_filters
    kernel: int = 5
    lstm_units: int = 128      # DeepConvLSTM
    tinyhar_filters: int = 20  # TinyHAR, the paper's default
    dropout: float = 0.1
    norm_mean: list[float] = field(default_factory=list)
    norm_std: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class Normalize(nn.Module):
    """Per-channel z-score with training-fold statistics stored as buffers."""

    def __init__(self, channels: int, mean=None, std=None):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean or [0.0] * channels, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std or [1.0] * channels, dtype=torch.float32))

    def forward(self, imu: torch.Tensor) -> torch.Tensor:
        return (imu - self.mean) / self.std


class _Baseline(nn.Module):
    def __init__(self, cfg: BaselineConfig):
        super().__init__()
        self.cfg = cfg
        self.normalize = Normalize(cfg.channels, cfg.norm_mean, cfg.norm_std)

    def set_normalization(self, mean, std) -> None:
        self.normalize.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.normalize.std.copy_(torch.as_tensor(std, dtype=torch.float32))
        self.cfg.norm_mean = [float(v) for v in mean]
        self.cfg.norm_std = [float(v) for v in std]


def _conv_block(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, kernel, padding=kernel // 2), nn.BatchNorm1d(cout), nn.ReLU())


class CNN1D(_Baseline):
    def __init__(self, cfg: BaselineConfig):
        super().__init__(cfg)
        f, k = cfg.filters, cfg.kernel
        self.features = nn.Sequential(
            _conv_block(cfg.channels, f, k), _conv_block(f, f, k), nn.MaxPool1d(2),
            _conv_block(f, f, k), _conv_block(f, f, k), nn.MaxPool1d(2))
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(f, cfg.n_classes)

    def forward(self, imu: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(imu).transpose(1, 2))            # (B, F, W/4)
        return self.head(self.drop(x.mean(dim=2)))


class DeepConvLSTM(_Baseline):
    def __init__(self, cfg: BaselineConfig):
        super().__init__(cfg)
        f, k = cfg.filters, cfg.kernel
        # 2-D convolutions with (k, 1) kernels: temporal filters shared across channels
        self.convs = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(1 if i == 0 else f, f, (k, 1), padding=(k // 2, 0)), nn.ReLU())
            for i in range(4)])
        self.drop = nn.Dropout(max(cfg.dropout, 0.5) if cfg.dropout > 0 else 0.0)
        self.lstm = nn.LSTM(f * cfg.channels, cfg.lstm_units, num_layers=2, batch_first=True)
        self.head = nn.Linear(cfg.lstm_units, cfg.n_classes)

    def forward(self, imu: torch.Tensor) -> torch.Tensor:
        x = self.convs(self.normalize(imu)[:, None])                      # (B, F, W, C)
        x = x.permute(0, 2, 1, 3).flatten(2)                              # (B, W, F*C)
        out, _ = self.lstm(self.drop(x))
        return self.head(self.drop(out[:, -1]))


class TinyHAR(_Baseline):
    def __init__(self, cfg: BaselineConfig):
        super().__init__(cfg)
        f, k = cfg.tinyhar_filters, cfg.kernel
        strides = (1, 2, 1, 2)      # the paper halves the time axis twice in the conv stack
        self.convs = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(1 if i == 0 else f, f, (k, 1), stride=(s, 1), padding=(k // 2, 0)),
                          nn.BatchNorm2d(f), nn.ReLU())
            for i, s in enumerate(strides)])
        self.channel_attention = nn.TransformerEncoderLayer(
            d_model=f, nhead=2, dim_feedforward=2 * f, dropout=cfg.dropout, batch_first=True)
        self.fuse = nn.Linear(f * cfg.channels, 2 * f)
        self.lstm = nn.LSTM(2 * f, 2 * f, batch_first=True)
        self.score = nn.Sequential(nn.Linear(2 * f, 2 * f), nn.Tanh(), nn.Linear(2 * f, 1))
        self.gamma = nn.Parameter(torch.zeros(1))
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * f, cfg.n_classes)

    def forward(self, imu: torch.Tensor) -> torch.Tensor:
        x = self.convs(self.normalize(imu)[:, None])                      # (B, F, T, C)
        B, F, T, C = x.shape
        x = x.permute(0, 2, 3, 1).reshape(B * T, C, F)                   # channels as tokens
        x = self.channel_attention(x).reshape(B, T, C * F)
        x = torch.relu(self.fuse(x))                                      # (B, T, 2F)
        h, _ = self.lstm(x)
        weight = torch.softmax(self.score(h), dim=1)                      # (B, T, 1)
        context = (weight * h).sum(dim=1)
        return self.head(self.drop(h[:, -1] + self.gamma * context))


BASELINES = {"cnn1d": CNN1D, "deepconvlstm": DeepConvLSTM, "tinyhar": TinyHAR}


def build_baseline(cfg: BaselineConfig | dict) -> _Baseline:
    cfg = cfg if isinstance(cfg, BaselineConfig) else BaselineConfig(**cfg)
    if cfg.arch not in BASELINES:
        raise ValueError(f"unknown baseline {cfg.arch!r} (known: {', '.join(BASELINES)})")
    return BASELINES[cfg.arch](cfg)
