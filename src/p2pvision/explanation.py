"""The one result type of every method that predicts or explains an image: :class:`Explanation`.

Post-hoc explainers, P2P and the trained baselines all implement one protocol, :class:`Explains`:
``explain(images, target=None, regions=None) -> Explanation``. An explanation stays on the images' device (metrics
consume it there); it becomes CPU tensors, JSON or a file only at the edge (:meth:`Explanation.cpu`,
:meth:`Explanation.record`, :meth:`Explanation.save`). Files are safetensors plus JSON metadata: loading runs no code.
Attributions computed elsewhere (Captum's, any (B,C,H,W) or (B,H,W) tensor) become an explanation with
:meth:`Explanation.from_attributions`, so this project's metrics score them (``p2pvision.metrics.score``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from p2pvision.cache import atomic_path, strict_json
from p2pvision.classifier import as_classifier
from p2pvision.errors import WeightsError
from p2pvision.regions import GridPartitioner, Partitioner, partition_batch, region_areas, region_mean
from p2pvision.regions.masks import hard_keep

TENSOR_FIELDS = (
    "predicted", "target", "pixel_map", "regions", "scores", "order", "keep", "probabilities", "evaluations",
)  # fmt: skip


@dataclass
class Explanation:
    """A batch of B images as a method predicted and explained them.

    - ``predicted`` (B,) int64: the class the method predicts; ``target`` (B,) int64: the class explained (the
      prediction unless asked otherwise).
    - ``pixel_map`` (B,H,W) float, higher = more evidence for ``target`` (None only for a plain classifier).
    - ``regions`` (B,H,W) int64 players with labels 0..K-1, ``scores`` (B,K) per region (0 in empty slots) and
      ``order`` (B,K) regions from most to least important (-1 pads unranked slots), where the method has them.
    - ``keep`` (B,H,W): what the classifier saw where the method keeps an input (P2P, the baselines): bool for a
      hard mask, float in [0, 1] for a soft one.
    - ``probabilities`` (B,C) the classifier's class probabilities where the method computes them.
    - ``evaluations`` (B,) model evaluations spent per image (a forward+backward pass counts as one; for P2P, a
      head + classifier run); ``seconds`` the wall time of the batch, of which ``forward_seconds`` in the model and
      ``removal_seconds`` filling removed pixels.
    - ``params``: the method's settings (JSON-serialisable); ``extras``: method-specific (B, ...) tensors (P2P's
      tau and region embeddings, MoXI's curve...).
    """

    method: str
    predicted: Tensor
    target: Tensor
    pixel_map: Tensor | None = None
    regions: Tensor | None = None
    scores: Tensor | None = None
    order: Tensor | None = None
    keep: Tensor | None = None
    probabilities: Tensor | None = None
    evaluations: Tensor | None = None
    seconds: float = 0.0
    forward_seconds: float = 0.0
    removal_seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.predicted)

    @property
    def device(self) -> torch.device:
        return self.predicted.device

    def tensors(self) -> dict[str, Tensor]:
        """The tensor fields that are set, by name (extras under ``extras.<name>``)."""
        named = {name: getattr(self, name) for name in TENSOR_FIELDS if getattr(self, name) is not None}
        return {**named, **{f"extras.{key}": value for key, value in self.extras.items()}}

    def _map(self, function: Callable[[Tensor], Tensor]) -> Explanation:
        moved: dict[str, Any] = {  # tensor field name -> value, for replace()
            name: function(getattr(self, name)) for name in TENSOR_FIELDS if getattr(self, name) is not None
        }
        return replace(self, **moved, extras={key: function(value) for key, value in self.extras.items()})

    def to(self, device: str | torch.device) -> Explanation:
        """The same explanation with every tensor on ``device``."""
        return self._map(lambda tensor: tensor.to(device))

    def cpu(self) -> Explanation:
        return self.to("cpu")

    def __getitem__(self, index: int | slice | Tensor) -> Explanation:
        """The explanation of some images: an index, a slice or an index tensor (the batch times are shared out)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        part = self._map(lambda tensor: tensor[index])
        share = len(part) / max(len(self), 1)
        return replace(part, seconds=self.seconds * share, forward_seconds=self.forward_seconds * share,
                       removal_seconds=self.removal_seconds * share)  # fmt: skip

    @classmethod
    @torch.no_grad()
    def of_classifier(cls, model: torch.nn.Module, images: Tensor, target: int | Tensor | None = None) -> Explanation:
        """A plain classifier's prediction on full images (no map): what a Blackbox contributes to an evaluation."""
        started = time.perf_counter()
        probabilities = model(images).float().softmax(-1)
        predicted = probabilities.argmax(-1)
        return cls(method="classifier", predicted=predicted, target=resolve_target(target, predicted),
                   probabilities=probabilities, evaluations=torch.ones(len(images), device=images.device),
                   seconds=time.perf_counter() - started)  # fmt: skip

    @classmethod
    @torch.no_grad()
    def from_attributions(
        cls,
        attributions: Any,
        model: torch.nn.Module,
        images: Tensor,
        target: int | Sequence[int] | Tensor | None = None,
        method: str = "attributions",
        regions: Tensor | None = None,
        partitioner: Partitioner | None = None,
        mean: Any = None,
        std: Any = None,
    ) -> Explanation:
        """The explanation of ``images`` (B,3,H,W) in [0,1] that ``attributions`` give for ``model``: e.g. Captum's
        output, (B,C,h,w) (channels summed, as Captum's visualisation does), (B,1,h,w) or (B,h,w), a tensor or an
        array; a map of another size (a layer's) is upsampled bilinearly to the images. One forward pass of
        ``model`` (as given: put it in eval mode; ``mean``/``std`` as for :func:`~p2pvision.explain.make_explainer`)
        gives the prediction and probabilities; ``target`` (None: the prediction) is the class the attributions
        explain. ``regions`` (default: ``partitioner``'s, a 14 x 14 grid) get the mean of the map as their scores,
        for the metrics that rank regions. The cost of the attributions is unknown here (``evaluations`` None)."""
        check_images(images)
        attributions = torch.as_tensor(attributions).detach().to(images.device, torch.float32)
        count, size = images.shape[0], tuple(images.shape[2:])
        if attributions.ndim == 3:
            attributions = attributions.unsqueeze(1)
        if attributions.ndim != 4 or attributions.shape[0] != count:
            raise ValueError(f"attributions must be ({count}, C, H, W) or ({count}, H, W) for {count} images, got "
                             f"shape {tuple(attributions.shape)}")  # fmt: skip
        pixel_map = attributions.sum(dim=1, keepdim=True)
        if tuple(pixel_map.shape[2:]) != size:
            pixel_map = F.interpolate(pixel_map, size=size, mode="bilinear")
        pixel_map = pixel_map.squeeze(1)
        classifier = as_classifier(model, mean, std)
        probabilities = classifier(images).float().softmax(-1)
        predicted = probabilities.argmax(-1)
        params: dict[str, Any] = {"method": method, "source": "attributions", "channels": "sum"}
        if regions is None:
            partitioner = partitioner if partitioner is not None else GridPartitioner(14)
            regions = partition_batch(images, partitioner)
            params["partition"] = partitioner.params
        regions = regions.to(images.device)
        slots = int(regions.max()) + 1 if regions.numel() else 0
        players = region_areas(regions, slots) > 0
        scores = region_mean(pixel_map.unsqueeze(1), regions, slots).squeeze(-1).masked_fill(~players, 0.0)
        return cls(method=method, predicted=predicted, target=resolve_target(target, predicted), pixel_map=pixel_map,
                   regions=regions, scores=scores, order=order_from_scores(scores, players),
                   probabilities=probabilities, params=params)  # fmt: skip

    # -- derived values -----------------------------------------------------------------------------------
    @property
    def confidence(self) -> Tensor | None:
        """(B,) the probability of the predicted class, where probabilities are known."""
        if self.probabilities is None:
            return None
        return self.probabilities.gather(1, self.predicted.view(-1, 1)).squeeze(1)

    @property
    def kept_fraction(self) -> Tensor | None:
        """(B,) share of pixels kept (a soft mask keeps its mean; see :func:`~p2pvision.regions.masks.hard_keep`)."""
        return None if self.keep is None else hard_keep(self.keep).flatten(1).double().mean(1)

    # -- at the edge ----------------------------------------------------------------------------------------
    def record(self, index: int, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """A strict-JSON record of image ``index``: classes, confidence, scores and order over its regions, kept
        fraction, cost per image, parameters and the extras that are numbers or vectors per image (non-finite numbers
        become null)."""
        target, predicted = int(self.target[index]), int(self.predicted[index])
        record: dict[str, Any] = {"method": self.method, "predicted": predicted, "target": target}
        if class_names is not None:
            record["predicted_name"], record["target_name"] = class_names[predicted], class_names[target]
        if self.confidence is not None:
            record["confidence"] = float(self.confidence[index])
        if self.scores is not None:
            players = int(self.regions[index].max()) + 1 if self.regions is not None else self.scores.shape[1]
            record["scores"] = self.scores[index, :players].tolist()
        if self.order is not None:
            record["order"] = [int(v) for v in self.order[index] if v >= 0]
        kept_fraction = self.kept_fraction  # set where keep is
        if kept_fraction is not None:
            record["kept_fraction"] = float(kept_fraction[index])
        share = 1 / max(len(self), 1)
        evaluations = float(self.evaluations[index]) if self.evaluations is not None else None
        record["cost"] = {"evaluations": evaluations, "seconds": self.seconds * share}
        record["params"] = self.params
        for key, value in self.extras.items():
            if value.ndim <= 2:  # per-image numbers and vectors; matrices (embeddings...) stay in saved files
                record[key] = value[index].tolist()
        return strict_json(record)

    def to_json(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """Strict-JSON dict: method, parameters, batch cost and one :meth:`record` per image."""
        return {"method": self.method, "params": strict_json(self.params), "seconds": self.seconds,
                "images": [self.record(i, class_names) for i in range(len(self))]}  # fmt: skip

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the explanation (all tensors, CPU) as one safetensors file; :meth:`load` reads it back."""
        path = Path(path)
        # own, contiguous memory: safetensors refuses views (e.g. P2P embeddings sliced from the head output)
        tensors = {name: value.detach().cpu().contiguous().clone() for name, value in self.tensors().items()}
        meta = {"method": self.method, "params": self.params, "seconds": self.seconds,
                "forward_seconds": self.forward_seconds, "removal_seconds": self.removal_seconds}  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"p2pvision_explanation": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Explanation:
        """An explanation written by :meth:`save` (no code is unpickled)."""
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {}).get("p2pvision_explanation", "null") or "null")
        if meta is None:
            raise WeightsError(f"'{path}' is not a p2pvision explanation file (no explanation metadata)")
        tensors = load_file(str(path), device=str(device))
        extras = {key.split(".", 1)[1]: value for key, value in tensors.items() if key.startswith("extras.")}
        known: dict[str, Any] = {name: tensors[name] for name in TENSOR_FIELDS if name in tensors}
        return cls(**meta, **known, extras=extras)


@runtime_checkable
class Explains(Protocol):
    """What every explainer, P2P and every baseline implements."""

    def explain(self, images: Tensor, target: int | Tensor | None = None, regions: Tensor | None = None) -> Explanation:
        """Explain images (B,3,H,W) in [0,1] for ``target`` (None: the predicted class) over ``regions``."""
        ...


def order_from_scores(scores: Tensor, players: Tensor) -> Tensor:
    """Players by decreasing score (stable for ties), empty players last as -1: (B,K) -> (B,K) int64."""
    ranked = scores.masked_fill(~players, float("-inf"))
    order = torch.argsort(ranked, dim=1, descending=True, stable=True)
    return order.masked_fill(~players.gather(1, order), -1)


def check_images(images: Tensor) -> None:
    """Images must be float (B,3,H,W) in [0, 1]: models normalise them themselves, so normalised (or 0-255) inputs
    would be explained wrongly without a word; a one-line error says so instead."""
    if images.ndim != 4 or images.shape[1] != 3 or not images.dtype.is_floating_point:
        raise ValueError(f"images must be a float tensor (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    low, high = (float(value) for value in images.detach().aminmax()) if images.numel() else (0.0, 0.0)
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(f"images must be in [0, 1] (models normalise them themselves), got values in "
                         f"[{low:.3g}, {high:.3g}]: pass the images before normalisation")  # fmt: skip


def resolve_target(target: int | Sequence[int] | Tensor | None, predicted: Tensor) -> Tensor:
    """``target`` as a (B,) int64 tensor on the predictions' device; None gives the predictions."""
    if target is None:
        return predicted.clone()
    target = torch.as_tensor(target, dtype=torch.int64, device=predicted.device)
    if target.ndim == 0:
        target = target.expand(len(predicted))
    if tuple(target.shape) != (len(predicted),):
        raise ValueError(f"target must be an int or a ({len(predicted)},) tensor, got shape {tuple(target.shape)}")
    return target.clone()
