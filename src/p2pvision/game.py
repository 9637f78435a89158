"""The region game: the value of a classifier's output when only some regions (players) of an image are kept.

``RegionGame(model, images, regions, removal, target)`` turns images (B,3,H,W), region label maps (B,H,W) with
K players and a removal strategy into a batched value function: ``game(coalitions)`` takes bool coalitions
(B,S,K) and returns (B,S) values of the target class, evaluating as many masked images per forward pass as
``batch_size`` allows, and counting every image the model sees in ``game.evaluations``. Approximators (MoXI,
Shapley sampling, LIME...) choose coalitions and live elsewhere, as in shapiq; P2P-style masking and the
faithfulness metrics reuse the same object with pixel masks (:meth:`RegionGame.masked_values`).

Values (``value=``): ``"log_odds"`` (default, MoXI's reward) ``logit_y - logsumexp(other logits)``,
``"log_prob"``, ``"prob"`` or the raw ``"logit"`` of the target class ``y``.

``forward_args``: extra arguments of the model's forward (Captum's ``additional_forward_args``), passed with every
evaluation; a tensor with one entry per image is indexed by the images each forward pass evaluates
(:func:`~p2pvision.classifier.forward_args_for`). ``progress``: a callable told the number of images of every
forward pass as it is counted (e.g. a progress bar's ``update``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from p2pvision.classifier import forward_args_for
from p2pvision.errors import ConfigError
from p2pvision.regions.ops import region_areas, region_to_pixel
from p2pvision.removal import Removal, TokenDropping, blend

VALUES = ("log_odds", "log_prob", "prob", "logit")


def masked_inputs(images: Tensor, keep: Tensor, removal: Removal, regions: Tensor | None = None) -> Tensor:
    """``images`` (N,3,H,W) with ``removal`` applied outside ``keep`` (N,H,W), bool or soft float (differentiable
    through the blend); :class:`RegionGame` blends its cached hole-independent fills itself."""
    return removal(images, keep, regions if removal.needs_regions else None)


def classify_masked(
    model: nn.Module, images: Tensor, keep: Tensor, removal: Removal | TokenDropping, regions: Tensor | None = None
) -> Tensor:
    """The one masked-classification step: logits of ``model`` on ``images`` (N,3,H,W) from which everything
    outside ``keep`` (N,H,W, bool or soft) is removed with ``removal`` (token dropping removes patch tokens inside a
    ViT instead). P2P, REAL-X, Blackbox-Pixel and the soft-mask model predict through it; :class:`RegionGame`
    runs the same two steps with its fills cached and its time and evaluations counted."""
    if isinstance(removal, TokenDropping):
        return removal.logits(model, images, keep)
    return model(masked_inputs(images, keep, removal, regions))


def class_values(logits: Tensor, target: Tensor, value: str = "log_odds") -> Tensor:
    """The value of class ``target`` (N,) in ``logits`` (N, C): log-odds, log-probability, probability or logit."""
    picked = logits.gather(1, target.view(-1, 1)).squeeze(1)
    if value == "logit":
        return picked
    if value == "log_prob":
        return picked - logits.logsumexp(dim=1)
    if value == "prob":
        return (picked - logits.logsumexp(dim=1)).exp()
    if value == "log_odds":
        others = logits.scatter(1, target.view(-1, 1), float("-inf"))
        return picked - others.logsumexp(dim=1)
    raise ConfigError(f"unknown value {value!r}; choose one of {VALUES}")


class RegionGame:
    """Batched, cost-counted value function over coalitions of regions (see the module docstring).

    ``regions`` are int64 label maps (B,H,W) with labels 0..K-1; K is the largest label + 1 over the batch and
    slots with no pixels in an image are empty players (``game.players`` is False there). ``target`` is a class
    index, a (B,) tensor, or None for the model's own top-1 class on the full images (B evaluations, counted):
    those full images go through the model in the first forward pass of the game's first evaluation, with its
    masked images, or in a pass of their own where :attr:`target` is read first.
    The model is used as given (put it in eval mode first). Hole-independent fills are computed once per image.

    Cost: the masked images of one evaluation are split into forward passes of nearly equal sizes of at most
    ``batch_size`` (197 images at 64 give 4 passes of 49-50 rather than 64, 64, 64 and 5), since a small pass costs
    more per image than a full one on most hardware.
    """

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        regions: Tensor,
        removal: Removal | TokenDropping,
        target: int | Tensor | None = None,
        value: str = "log_odds",
        batch_size: int = 64,
        forward_args: tuple[Any, ...] = (),
        progress: Callable[[int], None] | None = None,
    ) -> None:
        if images.ndim != 4 or images.shape[1] != 3 or not images.dtype.is_floating_point:
            raise ValueError(f"images must be a float tensor (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if regions.dtype != torch.int64 or tuple(regions.shape) != (images.shape[0], *images.shape[2:]):
            raise ValueError(f"regions must be int64 (B, H, W) matching the images, got {tuple(regions.shape)}")
        if value not in VALUES:
            raise ConfigError(f"unknown value {value!r}; choose one of {VALUES}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.images = images.detach()
        self.regions = regions.to(images.device)
        self.removal = removal
        self.value = value
        self.batch_size = int(batch_size)
        self.forward_args = tuple(forward_args)
        if self.forward_args and isinstance(removal, TokenDropping):
            raise ConfigError("token dropping runs the ViT's parts itself: it takes no additional_forward_args")
        self.num_players = int(self.regions.max()) + 1 if self.regions.numel() else 0
        self.areas = region_areas(self.regions, self.num_players)
        self.players = self.areas > 0
        self.evaluations = 0
        self.progress = progress
        self.forward_seconds = 0.0
        self.removal_seconds = 0.0
        self._fills = None
        # top-1 classes on the full images, learnt from any evaluation of a full keep mask (-1: not seen yet)
        self._predicted = torch.full((images.shape[0],), -1, dtype=torch.int64, device=images.device)
        if isinstance(removal, Removal) and not removal.hole_dependent:
            with torch.no_grad():
                started = time.perf_counter()
                self._fills = removal.fill(self.images, None, self.regions if removal.needs_regions else None)
                self.removal_seconds += time.perf_counter() - started
        # None: the model's top-1 classes, learnt in the game's first forward pass (see the class docstring)
        self._target: Tensor | None = None
        if target is not None or isinstance(removal, TokenDropping):
            self._target = self._resolve_target(target)

    @property
    def num_images(self) -> int:
        return self.images.shape[0]

    @property
    def target(self) -> Tensor:
        """The explained classes (B,): given, or the model's top-1 classes on the full images."""
        return self._learn_target()

    def _learn_target(self) -> Tensor:
        if self._target is None:
            self._target = self._resolve_target(None)
        return self._target

    def _resolve_target(self, target: int | Tensor | None) -> Tensor:
        count = self.num_images
        if target is None:
            logits = []
            with torch.no_grad():
                for start in range(0, count, self.batch_size):
                    index = torch.arange(start, min(start + self.batch_size, count), device=self.images.device)
                    logits.append(self._forward(self.images.index_select(0, index), index))
            if logits:
                self._predicted = torch.cat(logits).argmax(dim=1)
            return self._predicted.clone()
        target = torch.as_tensor(target, dtype=torch.int64, device=self.images.device)
        if target.ndim == 0:
            target = target.expand(count)
        if tuple(target.shape) != (count,):
            raise ValueError(f"target must be an int or a ({count},) tensor, got shape {tuple(target.shape)}")
        return target.clone()

    def predicted(self) -> Tensor:
        """The model's top-1 classes (B,) on the full images. Known when the target was None or a full keep mask
        was evaluated; the images not seen whole yet cost one counted forward pass each."""
        self._learn_target()  # a pending default target is learnt from the full images: their top-1 classes
        missing = (self._predicted < 0).nonzero().flatten()
        if len(missing):
            with torch.no_grad():
                for start in range(0, len(missing), self.batch_size):
                    index = missing[start : start + self.batch_size]
                    self._predicted[index] = self._forward(self.images.index_select(0, index), index).argmax(dim=1)
        return self._predicted.clone()

    def _forward(self, images: Tensor, index: Tensor) -> Tensor:
        """Logits of composed ``images`` (n,3,H,W) made from the game's images ``index`` (n,); counted."""
        started = time.perf_counter()
        args = forward_args_for(self.forward_args, index, self.num_images)
        logits = self.model(images, *args)
        self.forward_seconds += time.perf_counter() - started
        self._count(images.shape[0])
        return logits

    def _count(self, evaluations: int) -> None:
        self.evaluations += evaluations
        if self.progress is not None:
            self.progress(evaluations)

    def compose(self, index: Tensor, keep: Tensor) -> Tensor:
        """Images ``index`` (n,) with the removal applied outside ``keep`` (n,H,W) bool or float (differentiable)."""
        if isinstance(self.removal, TokenDropping):
            raise ConfigError("token dropping removes tokens inside the model: it has no composed image")
        started = time.perf_counter()
        if self._fills is not None:  # a blend, which broadcasts: one image or one fill is not copied n times
            images = self.images if self.num_images == 1 else self.images.index_select(0, index)
            shared = self._fills.shape[0] == 1 or self._fills.stride(0) == 0
            fills = self._fills[:1] if shared else self._fills.index_select(0, index)
            composed = blend(images, keep, fills)
        else:
            images, regions = self.images.index_select(0, index), self.regions.index_select(0, index)
            composed = masked_inputs(images, keep, self.removal, regions)
        self.removal_seconds += time.perf_counter() - started
        return composed

    def values_of_images(self, images: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Values and top-1 predictions of already composed images (n,3,H,W) for the targets of images ``index``."""
        logits = self._forward(images, index)
        return class_values(logits, self.target[index], self.value), logits.argmax(dim=1)

    def _masked_logits(self, index: Tensor, keep: Tensor) -> Tensor:
        if isinstance(self.removal, TokenDropping):
            started = time.perf_counter()
            logits = self.removal.logits(self.model, self.images.index_select(0, index), keep)
            self.forward_seconds += time.perf_counter() - started
            self._count(len(index))
            return logits
        return self._forward(self.compose(index, keep), index)

    def _chunk_sizes(self, count: int) -> list[int]:
        """Sizes of the forward passes for ``count`` masked images: nearly equal, at most ``batch_size``; with a
        pending target, the first one leaves room for the full images."""
        folded = self.num_images if self._target is None and count else 0
        total = count + folded
        passes = -(-total // self.batch_size)
        sizes = [total * (i + 1) // passes - total * i // passes for i in range(passes)]
        if folded and sizes[0] <= folded:  # the full images would fill the first pass: they get their own
            self._learn_target()
            return self._chunk_sizes(count)
        if folded:
            sizes[0] -= folded
        return sizes

    def _logits_with_target(self, index: Tensor, keep: Tensor) -> Tensor:
        """The masked images' logits from one forward pass that also gives the full images' top-1 classes (the
        pending target)."""
        everyone = torch.arange(self.num_images, device=self.images.device)
        composed = self.compose(index, keep)
        logits = self._forward(torch.cat([self.images, composed]), torch.cat([everyone, index]))
        self._predicted = logits[: self.num_images].detach().argmax(dim=1)
        self._target = self._predicted.clone()
        return logits[self.num_images :]

    def _run(
        self, shape: tuple[int, int], valid: Tensor | None, keep_of: Callable[[Tensor, Tensor], Tensor], grad: bool
    ) -> tuple[Tensor, Tensor]:
        batch, samples = shape
        if valid is not None and tuple(valid.shape) != shape:
            raise ValueError(f"valid must have shape {shape}, got {tuple(valid.shape)}")
        flat = (
            torch.arange(batch * samples, device=self.images.device)
            if valid is None
            else valid.reshape(-1).nonzero().squeeze(1).to(self.images.device)
        )
        values = torch.full((batch * samples,), float("nan"), device=self.images.device)
        predictions = torch.full((batch * samples,), -1, dtype=torch.int64, device=self.images.device)
        chunks = []
        with torch.set_grad_enabled(grad):
            start = 0
            for size in self._chunk_sizes(len(flat)):
                pairs = flat[start : start + size]
                start += size
                index, sample = pairs // samples, pairs % samples
                keep = keep_of(index, sample)
                if self._target is None:
                    logits = self._logits_with_target(index, keep)
                else:
                    logits = self._masked_logits(index, keep)
                whole = (keep >= 1).flatten(1).all(1)
                self._predicted[index[whole]] = logits.detach().argmax(dim=1)[whole]
                chunks.append((pairs, class_values(logits, self.target[index], self.value), logits.argmax(dim=1)))
        if chunks:  # out of place, so that with grad=True the values keep their autograd graph
            pairs = torch.cat([chunk[0] for chunk in chunks])
            values = values.to(chunks[0][1].dtype).index_put((pairs,), torch.cat([chunk[1] for chunk in chunks]))
            predictions = predictions.index_put((pairs,), torch.cat([chunk[2] for chunk in chunks]))
        return values.view(batch, samples), predictions.view(batch, samples)

    def evaluate(self, coalitions: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Values (B,S) and the model's top-1 classes (B,S) for bool coalitions (B,S,K) of kept players.

        Only entries where ``valid`` (B,S) is True are evaluated (others give NaN and -1), so ragged sets of
        coalitions cost nothing for their padding.
        """
        if coalitions.dtype != torch.bool or coalitions.ndim != 3:
            raise ValueError(f"coalitions must be bool (B, S, K), got {coalitions.dtype} {tuple(coalitions.shape)}")
        if coalitions.shape[0] != self.num_images or coalitions.shape[2] != self.num_players:
            raise ValueError(
                f"coalitions must be ({self.num_images}, S, {self.num_players}), got {tuple(coalitions.shape)}"
            )
        coalitions = coalitions.to(self.images.device)

        def keep_of(index: Tensor, sample: Tensor) -> Tensor:
            return region_to_pixel(coalitions[index, sample], self.regions.index_select(0, index))

        return self._run((coalitions.shape[0], coalitions.shape[1]), valid, keep_of, grad=False)

    def __call__(self, coalitions: Tensor, valid: Tensor | None = None) -> Tensor:
        """Values (B,S) of bool coalitions (B,S,K); see :meth:`evaluate`."""
        return self.evaluate(coalitions, valid)[0]

    def masked_values(self, keep: Tensor, valid: Tensor | None = None, grad: bool = False) -> Tensor:
        """Values (B,S) for pixel masks ``keep`` (B,S,H,W), bool or soft float; ``grad=True`` keeps gradients."""
        return self.masked(keep, valid, grad)[0]

    def masked(self, keep: Tensor, valid: Tensor | None = None, grad: bool = False) -> tuple[Tensor, Tensor]:
        """Values and the model's top-1 classes (B,S) for pixel masks ``keep`` (B,S,H,W), bool or soft float."""
        if keep.ndim != 4 or keep.shape[0] != self.num_images or keep.shape[2:] != self.images.shape[2:]:
            raise ValueError(
                f"keep must be (B, S, H, W) = ({self.num_images}, S, {self.images.shape[2]}, {self.images.shape[3]}), "
                f"got {tuple(keep.shape)}"
            )

        def keep_of(index: Tensor, sample: Tensor) -> Tensor:
            return keep[index, sample]

        return self._run((keep.shape[0], keep.shape[1]), valid, keep_of, grad=grad)

    def full_coalition(self) -> Tensor:
        """The coalition of all (non-empty) players, (B,1,K)."""
        return self.players.unsqueeze(1).clone()
