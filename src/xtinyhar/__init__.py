"""XTinyHAR: human activity recognition from wearable IMUs, distilled for edge CPUs."""

__version__ = "0.1.0"
