"""Metrics by name: ``make_metric(name, **params)`` or ``make_metric({"name": ..., **params})`` (config entries).

Every metric class registers itself with ``@METRICS.register()`` in its module; this module only turns a config
entry into a :meth:`~p2pvision.registry.Registry.create` call.
"""

from __future__ import annotations

from typing import Any

from p2pvision.metrics.base import METRICS, Metric


def metric_names() -> list[str]:
    """Names accepted by :func:`make_metric`."""
    return METRICS.names()


def make_metric(spec: str | dict[str, Any], **params: Any) -> Metric:
    """Build a metric from its name and parameters, or from one dict ``{"name": ..., **params}``."""
    if isinstance(spec, dict):
        params = {**{key: value for key, value in spec.items() if key != "name"}, **params}
        spec = spec.get("name")  # type: ignore[assignment]
    params = {key: tuple(value) if isinstance(value, list) else value for key, value in params.items()}
    return METRICS.create(spec, **params)  # type: ignore[arg-type]
