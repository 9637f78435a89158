"""p2pvision: inherently interpretable image classification (P2P), post-hoc explainers and their evaluation."""

__version__ = "0.1.0"

from p2pvision.errors import P2PVisionError

__all__ = ["P2PVisionError", "__version__"]
