"""Baselines for the P2P comparison, on the same classifier and training budget as P2P.

- :mod:`~p2pvision.baselines.pixel_mask`: Blackbox-Pixel, a classifier on a fixed, evenly spaced pixel mask.
- :mod:`~p2pvision.baselines.posthoc`: keep the top regions of a post-hoc attribution at a given kept fraction.
- :mod:`~p2pvision.baselines.realx`: REAL-X, an amortised region selector trained against a separately trained
  evaluator (a classifier that learned on random region masks).
- :mod:`~p2pvision.baselines.soft_mask`: a continuous per-pixel mask learned jointly with the classifier
  (COMET-like), whose inverted mask exposes information leakage.
- :mod:`~p2pvision.baselines.checkpoint`: save and load the trained baselines (safetensors + config.json).

Fixed-tau P2P and pixel-level P2P (2x2 cells or single pixels as regions) are P2P configurations, not code here.
The trained baselines reuse :class:`~p2pvision.models.p2p.config.P2PConfig` for their settings: ``classifier``,
``selector_*``, ``partition``, ``max_regions``; ``fixed_tau`` is the allowed kept fraction and
``lambda_sparse`` (with P2P's schedule) the weight of the penalty on keeping more than that.
"""

from p2pvision.baselines.checkpoint import load_baseline, save_baseline
from p2pvision.baselines.pixel_mask import PixelMaskClassifier, even_pixel_mask
from p2pvision.baselines.posthoc import top_regions_mask
from p2pvision.baselines.realx import RealXModel
from p2pvision.baselines.soft_mask import SoftMaskModel

__all__ = [
    "PixelMaskClassifier",
    "RealXModel",
    "SoftMaskModel",
    "even_pixel_mask",
    "load_baseline",
    "save_baseline",
    "top_regions_mask",
]
