"""The Hub conventions (:mod:`p2pvision.models.hub`) for the models built from one :class:`P2PConfig`: P2P and the
trained baselines. Their checkpoint's settings are the config (with the class names)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, cast

from p2pvision.errors import P2PVisionError
from p2pvision.models.hub import HubMixin, M
from p2pvision.models.p2p.config import P2PConfig
from p2pvision.models.weights import config_error


class P2PHubMixin(HubMixin):
    """``from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` for a model whose constructor takes a P2PConfig
    (``kind`` is ``p2p`` unless a baseline sets its own)."""

    kind: ClassVar[str] = "p2p"
    card_summary: ClassVar[str] = (
        'A P2P model (p2pvision; "From Pixels to Perception", ICML 2025): an image classifier that sees only the '
        "image regions its selector keeps. For each image it keeps the fewest regions whose prediction is certain "
        "enough (probability delta), and the kept regions are the explanation."
    )
    config: P2PConfig

    @classmethod
    def checkpoint_names(cls) -> tuple[str, str]:
        if cls.kind == "p2p":
            return "P2P", "'p2pvision train'"
        return "baseline", f"'p2pvision train' with train.mode={cls.kind}"

    def checkpoint_settings(self) -> dict[str, Any]:
        class_names = list(cast(Any, self).class_names)
        return dataclasses.replace(self.config, class_names=class_names).to_dict()

    @classmethod
    def from_checkpoint_settings(cls: type[M], settings: Mapping[str, Any], folder: Path) -> M:
        try:
            config = P2PConfig.from_dict(dict(settings))
        except (P2PVisionError, KeyError, TypeError, ValueError) as exc:
            raise config_error(folder, exc) from None
        # The saved weights replace everything: build the networks without fetching pretrained weights.
        try:
            model = cast(Any, cls)(dataclasses.replace(config, classifier_weights=None, selector_weights=None))
        except P2PVisionError as exc:  # e.g. a backbone name this timm does not know
            raise config_error(folder, exc) from None
        model.config = config
        return cast(M, model)
