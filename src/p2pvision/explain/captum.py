"""Any Captum attribution method as an explainer: ``make_explainer("captum", model, attribution="IntegratedGradients",
n_steps=32)``, so that Captum's methods run in the benchmark and the report beside this project's (a method entry
``{kind: explainer, explainer: captum, params: {attribution: IntegratedGradients, n_steps: 32}}``).

Keyword options go to the Captum class's constructor where it takes them (``multiply_by_inputs``...) and to its
``attribute`` otherwise (``n_steps``, ``baselines``, ``sliding_window_shapes``...; YAML lists become tuples); a
``layer`` (a module of the model or its name) goes to the layer methods (``LayerGradCam``...). Perturbation methods
that take a ``feature_mask`` (``FeatureAblation``, ``ShapleyValueSampling``, ``Lime``, ``KernelShap``) get the
explainer's regions unless one is given. Captum attributes the target's logit of the model fed images in [0,1]
(normalised inside, as every explainer here), so ``baselines`` are images in [0,1] too (Captum's default 0 is
black). The map is the sum of the attribution over channels (Captum's visualisation), upsampled bilinearly where a
layer's map is smaller; the region scores are its region means. ``evaluations`` counts every image the model saw
(a forward+backward pass counts once), plus one pass for the prediction; random methods draw from ``seed``.

Captum is an optional dependency (``pip install captum``, or the ``captum`` extra): no method of this project needs
it, so the package stays without it; it is imported when this explainer is built, and a one-line error names the
install command where it is missing.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p2pvision.classifier import network_of
from p2pvision.config import NonNegativeInt, PositiveInt
from p2pvision.errors import ConfigError
from p2pvision.explain.base import (
    EXPLAINERS,
    Attribution,
    Explainer,
    check_positive,
    order_from_scores,
    pixel_scores,
    present_players,
)
from p2pvision.regions import Partitioner

# Constructor parameters that the explainer fills itself.
_OWN = ("self", "forward_func", "model", "layer", "device_ids")
# Captum methods whose cost per image is known beforehand (checked in tests/test_explain_cost.py), besides the one
# pass for the prediction: one pass, two (an extra pass of the baseline or of guided backpropagation), or
# ``n_steps`` / ``n_samples`` passes.
_ONE_PASS = ("Saliency", "InputXGradient", "GuidedBackprop", "Deconvolution", "LayerGradCam",
             "LayerGradientXActivation")  # fmt: skip
_TWO_PASSES = ("GuidedGradCam", "DeepLift")
_STEPS = ("IntegratedGradients", "InternalInfluence")
# Options of ``attribute`` that count something (steps, samples, images per pass): integers >= 1.
_COUNTS = ("n_steps", "n_samples", "internal_batch_size", "perturbations_per_eval", "nt_samples",
           "nt_samples_batch_size")  # fmt: skip
# What explain() gives Captum itself.
_GIVEN = ("inputs", "target", "additional_forward_args")


def _captum_attr() -> Any:
    try:
        import captum.attr
    except ImportError:
        raise ConfigError("the captum explainer needs Captum: pip install captum") from None
    return captum.attr


def _attribution_class(name: str) -> Any:
    attr = _captum_attr()
    found = getattr(attr, name, None)
    if not (isinstance(found, type) and issubclass(found, attr.Attribution)):
        names = sorted(n for n in dir(attr) if isinstance(getattr(attr, n), type)
                       and issubclass(getattr(attr, n), attr.Attribution) and n[0].isupper())  # fmt: skip
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"attribution must be a Captum attribution class, got {name!r}{hint}; e.g. "
                          "IntegratedGradients, Saliency, LayerGradCam, Occlusion, FeatureAblation")  # fmt: skip
    return found


def _describe(value: Any) -> Any:
    """A JSON-serialisable description of an option (tensors by shape, modules by type)."""
    if isinstance(value, Tensor):
        return value.item() if value.numel() == 1 else f"tensor {list(value.shape)}"
    if isinstance(value, nn.Module):
        return type(value).__name__
    if isinstance(value, (list, tuple)):
        return [_describe(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _describe(item) for key, item in value.items()}
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


class _Counted(nn.Module):
    """The classifier as Captum's forward function (a module, for the methods that hook its layers), counting the
    images it sees."""

    def __init__(self, model: nn.Module, progress: Any = None) -> None:
        super().__init__()
        self.model = model
        self.seen = 0
        self.progress = progress

    def forward(self, images: Tensor, *args: Any) -> Tensor:
        self.seen += images.shape[0]
        if self.progress is not None:
            self.progress(images.shape[0])
        return self.model(images, *args)


@EXPLAINERS.register()
class CaptumExplainer(Explainer):
    """A Captum attribution method (``attribution``, a class name of ``captum.attr``) with its keyword
    ``options``, on chunks of ``batch_size`` images (see the module docstring). Cost: the method's own (e.g.
    ``n_steps`` evaluations per image for integrated gradients) plus one for the prediction; known beforehand
    (:meth:`planned_evaluations`) for the common methods, e.g. integrated gradients, saliency, feature ablation,
    occlusion, Shapley value sampling."""

    name = "captum"

    def __init__(
        self,
        model: nn.Module,
        attribution: str = "IntegratedGradients",
        partitioner: Partitioner | None = None,
        layer: str | nn.Module | None = None,
        batch_size: PositiveInt = 16,
        seed: NonNegativeInt = 0,
        **options: Any,
    ) -> None:
        super().__init__(model, partitioner)
        self.attribution = attribution
        self.cls = _attribution_class(attribution)
        self.batch_size = check_positive("batch_size", batch_size)
        self.seed = int(seed)
        self.options = {key: tuple(value) if isinstance(value, list) else value for key, value in options.items()}
        init = inspect.signature(self.cls.__init__).parameters
        self.init_options = {key: value for key, value in self.options.items() if key in init and key not in _OWN}
        self.attribute_options = {key: value for key, value in self.options.items() if key not in self.init_options}
        problem = self.option_problem({"attribution": attribution, **options})
        if problem is not None:
            key, value, allowed = problem
            raise ConfigError(f"{key}: got {value!r}; {allowed}")
        missing = [
            name
            for name, parameter in init.items()
            if name not in (*_OWN, *self.init_options)
            and parameter.default is parameter.empty
            and parameter.kind is parameter.POSITIONAL_OR_KEYWORD
        ]
        if missing:  # e.g. NoiseTunnel, which wraps another attribution object
            raise ConfigError(
                f"Captum's {attribution} needs {', '.join(missing)}, which the captum explainer does "
                "not build: wrap it yourself and score its output with p2pvision.metrics.score"
            )
        self.takes_layer = "layer" in init
        network = network_of(self.model)
        if isinstance(layer, nn.Module):
            layer = next((name for name, module in network.named_modules() if module is layer and name), None)
            if layer is None:
                raise ConfigError("the layer module given to the captum explainer is not a submodule of the model")
        if self.takes_layer and layer is None:
            raise ConfigError(f"Captum's {attribution} attributes to a layer: give layer=... (a module or its name)")
        if layer is not None and not self.takes_layer:
            raise ConfigError(f"Captum's {attribution} takes no layer")
        if layer is not None:
            try:
                network.get_submodule(layer)
            except AttributeError as error:
                raise ConfigError(f"model has no layer {layer!r}: {error}") from None
        self.layer = layer
        self.takes_feature_mask = "feature_mask" in inspect.signature(self.cls.attribute).parameters
        # the timing probe runs a backward pass for gradient methods
        self.backward = not issubclass(self.cls, _captum_attr().PerturbationAttribution)

    @classmethod
    def option_problem(cls, options: dict[str, Any]) -> tuple[str, Any, str] | None:
        """The first of Captum's options in ``options`` that cannot work (see :meth:`Explainer.option_problem`): an
        unknown attribution class or option name, an argument that explain() gives, a count (``n_steps``...) that is
        not an integer >= 1, or text where Captum's default is a number or a switch."""
        attribution = options.get("attribution", "IntegratedGradients")
        try:
            method = _attribution_class(attribution)
        except ConfigError as error:
            return "attribution", attribution, str(error)
        own = set(inspect.signature(cls).parameters)
        init = inspect.signature(method.__init__).parameters
        attribute = inspect.signature(method.attribute).parameters
        known = sorted({*init, *attribute} - {*_OWN, *_GIVEN, "kwargs"})
        for key, value in options.items():
            if key in own:
                continue
            if key in _GIVEN:
                return key, value, "given to explain() (target=..., additional_forward_args=...), not as an option"
            if key in _OWN or (key not in init and key not in attribute):
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                return key, value, f"not an option of Captum's {attribution}{hint}; known: {', '.join(known)}"
            default = (init[key] if key in init else attribute[key]).default
            if key in _COUNTS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                return key, value, "must be an integer >= 1"
            if isinstance(default, bool) and not isinstance(value, bool):
                return key, value, "must be true or false"
            if type(default) in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                return key, value, "must be a number"
        return None

    def _option(self, key: str) -> Any:
        """An option of ``attribute`` as given, else Captum's default."""
        if key in self.attribute_options:
            return self.attribute_options[key]
        return inspect.signature(self.cls.attribute).parameters[key].default

    def planned_evaluations(self, num_players: int, height: int, width: int) -> int | None:
        """The Captum method's passes per image plus the prediction's, for the methods listed in ``_ONE_PASS``,
        ``_TWO_PASSES``, ``_STEPS`` and feature ablation, occlusion, Shapley value sampling, gradient SHAP; None for
        the others (their cost is counted, not known beforehand)."""
        name = self.attribution
        if name in _ONE_PASS:
            return 2
        if name in _TWO_PASSES:
            return 3
        if name in _STEPS:
            return 1 + int(self._option("n_steps"))
        if name == "GradientShap":
            return 1 + int(self._option("n_samples"))
        if name == "FeatureAblation" and "feature_mask" not in self.attribute_options:
            return 2 + num_players
        if name == "ShapleyValueSampling" and "feature_mask" not in self.attribute_options:
            return 2 + int(self._option("n_samples")) * num_players
        if name == "Occlusion":
            shapes, strides = self._option("sliding_window_shapes"), self._option("strides")
            if not isinstance(shapes, tuple) or len(shapes) != 3:
                return None
            strides = strides if isinstance(strides, tuple) else (strides or 1,) * 3
            if len(strides) != 3:
                return None
            windows = 1
            for size, shape, stride in zip((3, height, width), shapes, strides):
                windows *= -(-(size - shape) // stride) + 1  # Captum's: ceil((size - shape) / stride) + 1
            return 2 + windows
        return None

    def _method(self, forward: _Counted) -> Any:
        first = "model" if "model" in inspect.signature(self.cls.__init__).parameters else "forward_func"
        arguments: dict[str, Any] = {first: forward, **self.init_options}
        if self.takes_layer and self.layer is not None:
            arguments["layer"] = network_of(self.model).get_submodule(self.layer)
        return self.cls(**arguments)

    def _attribute(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> Attribution:
        batch = images.shape[0]
        forward = _Counted(self.model, self.progress)
        method = self._method(forward)
        chunks = [torch.arange(start, min(start + self.batch_size, batch), device=images.device)
                  for start in range(0, batch, self.batch_size)]  # fmt: skip
        with torch.no_grad():
            predicted = torch.cat([forward(images[index], *self.forward_args_for(index, batch)).argmax(1)
                                   for index in chunks])  # fmt: skip
        chosen = predicted if target is None else torch.as_tensor(target, dtype=torch.int64, device=images.device)
        chosen = chosen.expand(batch).clone()
        maps = []
        devices = [images.device.index or 0] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed(self.seed)
            for index in chunks:
                options = {  # tensors with one entry per image (baselines...) are sliced like the images
                    key: value[index.to(value.device)]
                    if isinstance(value, Tensor) and value.ndim == 4 and value.shape[0] == batch else value
                    for key, value in self.attribute_options.items()
                }  # fmt: skip
                if self.takes_feature_mask and "feature_mask" not in options:
                    options["feature_mask"] = regions[index].unsqueeze(1)
                args = self.forward_args_for(index, batch)
                result = method.attribute(images[index].clone(), target=chosen[index],
                                          additional_forward_args=args or None, **options)  # fmt: skip
                maps.append(self._map(result[0] if isinstance(result, tuple) else result, images.shape[2:]))
        pixel_map = torch.cat(maps)
        scores = pixel_scores(pixel_map, regions)
        return Attribution(
            scores=scores,
            target=chosen,
            predicted=predicted,
            evaluations=forward.seen,
            order=order_from_scores(scores, present_players(regions)),
            pixel_map=pixel_map,
        )

    @staticmethod
    def _map(attributions: Tensor, size: torch.Size) -> Tensor:
        """(B,H,W): the attribution summed over channels, upsampled bilinearly where it is smaller."""
        attributions = attributions.detach().float()
        if attributions.ndim == 3:
            attributions = attributions.unsqueeze(1)
        if attributions.ndim != 4:
            raise ConfigError(f"the Captum attribution has shape {tuple(attributions.shape)}: an image map needs "
                              "(B, C, H, W)")  # fmt: skip
        summed = attributions.sum(dim=1, keepdim=True)
        if tuple(summed.shape[2:]) != tuple(size):
            summed = F.interpolate(summed, size=tuple(size), mode="bilinear")
        return summed.squeeze(1)

    @property
    def params(self) -> dict[str, Any]:
        return {"attribution": self.attribution, "layer": self.layer, "batch_size": self.batch_size,
                "seed": self.seed, **{key: _describe(value) for key, value in self.options.items()}}  # fmt: skip
