"""ddlvad: video anomaly detection with Dynamic Distinction Learning (DDL)."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config
from .errors import UserError

__all__ = ["AnomalyDetector", "Config", "UserError", "build_model", "__version__"]


def __getattr__(name: str):
    # torch-heavy names are imported lazily so that `import ddlvad` (and the CLI's --help) stay fast.
    if name == "build_model":
        from .models import build_model

        return build_model
    if name == "AnomalyDetector":
        from .stream import AnomalyDetector

        return AnomalyDetector
    raise AttributeError(name)
