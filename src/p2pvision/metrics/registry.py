"""The registry of metrics by name: ``make_metric(name, **params)`` or ``make_metric({"name": ..., **params})``."""

from __future__ import annotations

from typing import Any

from p2pvision.errors import ConfigError
from p2pvision.metrics.base import Metric
from p2pvision.metrics.faithfulness import InverseMaskLeakage, MoxiAccuracy, P2PAgreement, RiseAUC, SaliencyMetric
from p2pvision.metrics.localisation import (
    BoxLocalisationError,
    MaskIoU,
    MaskPrecision,
    PixelAveragePrecision,
    PointingGame,
    RelevanceMass,
)
from p2pvision.metrics.prediction import Accuracy, Cost, KeptFraction
from p2pvision.metrics.similarity import MapSimilarity

METRICS: dict[str, type[Metric]] = {
    cls.name: cls
    for cls in (
        Accuracy,
        KeptFraction,
        Cost,
        MaskPrecision,
        MaskIoU,
        PixelAveragePrecision,
        PointingGame,
        RelevanceMass,
        BoxLocalisationError,
        P2PAgreement,
        RiseAUC,
        MoxiAccuracy,
        SaliencyMetric,
        InverseMaskLeakage,
        MapSimilarity,
    )
}


def metric_names() -> list[str]:
    """Names accepted by :func:`make_metric`."""
    return list(METRICS)


def make_metric(spec: str | dict[str, Any], **params: Any) -> Metric:
    """Build a metric from its name and parameters, or from one dict ``{"name": ..., **params}``."""
    if isinstance(spec, dict):
        params = {**{key: value for key, value in spec.items() if key != "name"}, **params}
        spec = spec.get("name")
    if spec not in METRICS:
        raise ConfigError(f"unknown metric {spec!r}; choose one of {', '.join(metric_names())}")
    params = {key: tuple(value) if isinstance(value, list) else value for key, value in params.items()}
    try:
        return METRICS[spec](**params)
    except TypeError as error:  # unexpected or missing keyword
        raise ConfigError(f"invalid parameters for metric {spec!r}: {error}") from error
