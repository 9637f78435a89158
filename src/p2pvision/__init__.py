"""p2pvision: inherently interpretable image classification (P2P), post-hoc explainers and their evaluation."""

from p2pvision._torchvision_compat import install_import_hook

install_import_hook()

__version__ = "0.1.0"

from p2pvision.errors import P2PVisionError  # noqa: E402

__all__ = ["P2PVisionError", "__version__"]
