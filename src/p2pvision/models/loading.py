"""Load the classifier to explain: a timm model with its weights, or the classifier of a P2P checkpoint.

Used by ``p2pvision explain`` and ``p2pvision inv explain``; imports nothing heavy until a model is loaded.
"""

from __future__ import annotations

from typing import Any

from p2pvision.errors import ConfigError

DEFAULT_MODEL = "tf_efficientnet_lite0"


def load_model(name: str, weights: str | None, device: str):
    """The timm classifier ``name`` in eval mode on ``device``. ``weights``: 'package' (offline weights package),
    a local weights file, 'hub', or 'none' for random weights; None means 'package' where one exists."""
    from p2pvision.models.backbones import WEIGHT_PACKAGES, create_classifier

    if weights is None:
        if name not in WEIGHT_PACKAGES:
            raise ConfigError(f"--weights is required for '{name}': a local weights file, 'hub', or 'none'")
        weights = "package"
    return create_classifier(name, weights=None if weights == "none" else weights).to(device).eval()


def load_p2p_classifier(checkpoint: str, device: str):
    """The classifier of a P2P checkpoint, preprocessing images to the size it was trained at."""
    from p2pvision.models.p2p.checkpoint import load_p2p

    p2p = load_p2p(checkpoint)
    classifier = p2p.classifier
    classifier.input_size = (3, p2p.config.image_size, p2p.config.image_size)
    classifier.crop_pct = 1.0  # resize the shorter side to the training size, then centre-crop, as P2P predict does
    return classifier.to(device).eval()


def load_explained_model(
    model: str = DEFAULT_MODEL, weights: str | None = None, checkpoint: str | None = None, device: str = "cpu"
) -> tuple[Any, str]:
    """The model to explain, in eval mode on ``device``, and its name: the classifier of the P2P ``checkpoint``
    when one is given, else the timm ``model`` with ``weights`` (see :func:`load_model`)."""
    if checkpoint is not None:
        return load_p2p_classifier(checkpoint, device), f"P2P classifier of {checkpoint}"
    return load_model(model, weights, device), model
