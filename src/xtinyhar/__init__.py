"""XTinyHAR: human activity recognition from wearable IMUs, distilled for edge CPUs."""

__version__ = "0.1.0"

__all__ = ["HarClassifier", "__version__"]


def __getattr__(name: str):
    """``xtinyhar.HarClassifier`` without importing torch for the device runtime."""
    if name == "HarClassifier":
        from xtinyhar.api import HarClassifier
        return HarClassifier
    raise AttributeError(f"module 'xtinyhar' has no attribute {name!r}")
