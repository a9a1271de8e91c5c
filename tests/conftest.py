"""Shared fixtures. Real-data tests read ../shared/data beside the repository.

Locally a missing ../shared/data skips those tests; under CI (``CI=true``) it fails the run,
so CI can never pass without having tested on the real data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
UTD_ROOT = SHARED_DATA / "utd_mhad"
CONFIGS = REPO / "configs"


def require(path: Path) -> Path:
    """Return ``path`` if it exists; otherwise skip locally, fail under CI."""
    if path.exists():
        return path
    message = f"real data not found at {path} (expected ../shared/data beside the repo)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def utd_root() -> Path:
    return require(UTD_ROOT)


@pytest.fixture(scope="session")
def utd_trials(utd_root):
    """All 861 UTD-MHAD trials with skeletons, loaded once per test session."""
    from xtinyhar.data.utd_mhad import load_utd_mhad
    return load_utd_mhad(utd_root)


@pytest.fixture(scope="session")
def utd_config(utd_root):
    from xtinyhar.config import load_config
    # the seed values (W=100, stride 50): shape and content tests below count on them
    return load_config(CONFIGS / "utd_mhad_paper.yaml", {"data.root": str(utd_root)})


@pytest.fixture(scope="session")
def utd_cache(utd_config, utd_trials):
    from xtinyhar.preprocess.tokens import build_token_cache
    trials, classes = utd_trials
    return build_token_cache(utd_config, trials, classes)
