"""P2P: an image classifier that sees only the regions its selector keeps (``../shared/spec/p2p.md``).

Flow: image -> selector features (once) -> tau-conditioned head -> per-region logit ``mu`` and embedding
``e`` (pixel -> region mean) -> region mask -> masked image (removed regions filled black) -> classifier.

Training samples ``z ~ N(mu, Sigma)`` with ``Sigma = E E^T + jitter I`` and relaxes the Bernoulli mask with a
temperature. Because Sigma is low rank plus a diagonal, ``z = mu + E eps_d + sqrt(jitter) eps_K`` (eps_d of
the embedding size, eps_K of the region count) has exactly that distribution; this replaces the reference's
Cholesky factorisation of a K x K matrix with growing jitter. At test time the mask is hard: keep region k
iff ``mu_k > 0``, and at least ``min_kept_regions`` regions (the largest ``mu``; the authors' code may keep none,
then the classifier sees a black image). With dynamic sparsity the smallest tau on a grid whose prediction is at
least delta-certain is chosen per image; the search re-runs only the head and the classifier, and only for
undecided images.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p2pvision.explanation import Explanation, check_images, order_from_scores, resolve_target
from p2pvision.game import classify_masked, masked_inputs
from p2pvision.models.backbones import create_classifier
from p2pvision.models.p2p.config import P2PConfig
from p2pvision.models.p2p.hub import P2PHubMixin
from p2pvision.models.p2p.search import (
    SEARCH_METHODS,
    MaskEvaluator,
    RegionOutputs,
    SearchResult,
    TauQuery,
    bisection_search,
    endpoint_search,
    grid_search,
    hard_keep,
)
from p2pvision.models.p2p.selector import Selector
from p2pvision.regions.ops import region_areas, region_mean, region_to_pixel
from p2pvision.regions.partition import make_partitioner, partition_batch
from p2pvision.removal import TokenDropping, make_removal


@dataclass
class P2POutput:
    """One training/evaluation pass: class logits (B*S, C) for S mask samples per image, and what led to them."""

    logits: Tensor
    masks: Tensor  # (B, S, K) region masks in [0, 1]
    regions: RegionOutputs
    tau: Tensor  # (B,)


def relaxed_bernoulli(logits: Tensor, temperature: float, generator: torch.Generator | None = None) -> Tensor:
    """A reparameterised relaxed Bernoulli (binary concrete) sample ``sigmoid((logits + logistic noise) / T)``."""
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    uniform = uniform.clamp(1e-6, 1 - 1e-6)
    return torch.sigmoid((logits + torch.log(uniform) - torch.log1p(-uniform)) / temperature)


def straight_through(soft: Tensor) -> Tensor:
    """Hard 0/1 values in the forward pass with the gradient of ``soft``."""
    hard = (soft > 0.5).to(soft.dtype)
    return hard + soft - soft.detach()


class P2PModel(P2PHubMixin, nn.Module):
    """Selector + region masking + classifier; see the module docstring."""

    def __init__(self, config: P2PConfig) -> None:
        super().__init__()
        self.config = config
        self.selector = Selector(
            config.selector_backbone,
            config.selector_weights,
            config.selector_levels,
            config.head_channels,
            config.embedding_dim,
            config.initial_keep_logit,
            config.tau_conditioning,
        )
        self.classifier = create_classifier(
            config.classifier,
            weights=config.classifier_weights,
            num_classes=config.num_classes,
            class_names=config.class_names,
        )
        self.fill = make_removal(config.fill)

    @property
    def class_names(self) -> list[str]:
        return self.classifier.class_names

    # -- pieces -------------------------------------------------------------------------------------------
    def region_outputs(self, features: Tensor, regions: Tensor, tau: Tensor) -> RegionOutputs:
        """Run the head for budgets ``tau`` (B,) and average its outputs over the regions of ``regions``."""
        size = (regions.shape[-2], regions.shape[-1])
        pixels = self.selector.head(features, tau, size)
        per_region = region_mean(pixels, regions, self.config.max_regions)
        areas = region_areas(regions, self.config.max_regions).to(per_region.dtype)
        logits = per_region[..., 0]
        expected = (torch.sigmoid(logits) * areas).sum(-1) / (size[0] * size[1])
        return RegionOutputs(logits, per_region[..., 1:], areas, expected)

    def sample_logits(self, outputs: RegionOutputs, samples: int, generator: torch.Generator | None = None) -> Tensor:
        """``samples`` draws (B, S, K) of ``z ~ N(mu, E E^T + jitter I)`` (reparameterised)."""
        batch, slots, dim = outputs.embeddings.shape
        device, dtype = outputs.logits.device, outputs.logits.dtype
        shared = torch.randn(batch, samples, dim, generator=generator, device=device, dtype=dtype)
        independent = torch.randn(batch, samples, slots, generator=generator, device=device, dtype=dtype)
        correlated = torch.einsum("bkd,bsd->bsk", outputs.embeddings, shared)
        noise = correlated + math.sqrt(self.config.jitter) * independent
        return outputs.logits[:, None] + noise * (outputs.areas[:, None] > 0)

    def masked_images(self, images: Tensor, regions: Tensor, masks: Tensor) -> Tensor:
        """Images (B*S, 3, H, W) with each of the S region masks (B, S, K) applied (removed regions filled)."""
        if isinstance(self.fill, TokenDropping):
            raise ValueError("fill 'token_drop' removes patch tokens inside the classifier: there are no masked images")
        keep = region_to_pixel(masks, regions).flatten(0, 1)
        return masked_inputs(_per_sample(images, masks.shape[1]), keep, self.fill)

    def classify_regions(self, images: Tensor, regions: Tensor, masks: Tensor) -> Tensor:
        """Class logits (B*S, C) of the classifier on the images with each of the S region masks (B, S, K)."""
        keep = region_to_pixel(masks, regions).flatten(0, 1)
        return classify_masked(self.classifier, _per_sample(images, masks.shape[1]), keep, self.fill)

    def default_tau(self, batch: int, device: torch.device) -> Tensor:
        """Training budgets: U(tau_range) per image (dynamic) or the constant fixed_tau."""
        if self.config.tau_mode == "fixed":
            return torch.full((batch,), self.config.fixed_tau, device=device)
        low, high = self.config.tau_range
        return low + (high - low) * torch.rand(batch, device=device)

    # -- training -----------------------------------------------------------------------------------------
    def forward(
        self,
        images: Tensor,
        regions: Tensor,
        tau: Tensor | None = None,
        *,
        temperature: float = 1.0,
        stochastic: bool = True,
        hard: bool = False,
        samples: int | None = None,
    ) -> P2POutput:
        """One pass with masks that are relaxed samples (``stochastic``), or the test-time hard ``mu > 0`` masks.

        ``hard`` with ``stochastic`` gives straight-through hard samples (gradients of the relaxed ones).
        """
        tau = self.default_tau(len(images), images.device) if tau is None else tau
        outputs = self.region_outputs(self.selector.features(images), regions, tau)
        if stochastic:
            z = self.sample_logits(outputs, samples or self.config.mc_samples)
            masks = relaxed_bernoulli(z, temperature)
            if hard or self.config.straight_through:
                masks = straight_through(masks)
        else:  # the test-time mask, with straight-through gradients of sigmoid(mu / temperature)
            soft = torch.sigmoid(outputs.logits / temperature)
            kept = self.hard_keep(outputs.logits, outputs.areas).to(soft.dtype)
            masks = (kept + soft - soft.detach())[:, None]
        masks = masks * (outputs.areas[:, None] > 0)
        logits = self.classify_regions(images, regions, masks)
        return P2POutput(logits, masks, outputs, tau)

    def loss(self, output: P2POutput, labels: Tensor, sparsity_weight: float) -> dict[str, Tensor]:
        """Cross-entropy on every mask sample + sparsity penalty above tau + covariance penalty.

        The covariance penalty is ``lambda_cov`` times the mean of ``|E E^T|`` over the pairs of regions that exist
        in each image. A deliberate difference from the authors' code, which averages over all B*K*K entries,
        empty slots (zeros) included: there the penalty shrinks with the share of occupied slots, so its weight
        depends on ``max_regions`` and on how many superpixels each image gets; here it does not.
        """
        samples = output.masks.shape[1]
        ce = F.cross_entropy(output.logits, labels.repeat_interleave(samples))
        p_bar, tau = output.regions.expected_kept, output.tau
        if self.config.sparsity_loss == "log":
            excess = -torch.log1p(-p_bar.clamp(max=1 - 1e-6)) + torch.log1p(-tau.clamp(max=1 - 1e-6))
        else:
            excess = p_bar - tau
        sparse = sparsity_weight * (excess * (p_bar > tau)).mean()
        valid = (output.regions.areas > 0).to(p_bar.dtype)
        pairs = valid[:, :, None] * valid[:, None, :]
        embeddings = output.regions.embeddings
        covariance = torch.einsum("bkd,bld->bkl", embeddings, embeddings).abs()
        cov = self.config.lambda_cov * (covariance * pairs).sum() / pairs.sum().clamp(min=1)
        return {"loss": ce + sparse + cov, "ce": ce, "sparsity": sparse, "covariance": cov}

    # -- inference ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def classify_at(
        self, features: Tensor, images: Tensor, regions: Tensor, tau: Tensor
    ) -> tuple[Tensor, RegionOutputs]:
        """Class logits with hard masks (keep ``mu > 0``) at budgets ``tau`` (B,), running the head at image size."""
        outputs = self.region_outputs(features, regions, tau)
        masks = self.hard_keep(outputs.logits, outputs.areas).to(images.dtype)[:, None]
        return self.classify_regions(images, regions, masks), outputs

    def hard_keep(self, logits: Tensor, areas: Tensor) -> Tensor:
        """The test-time hard mask (B, K): regions with ``mu > 0``, at least ``config.min_kept_regions`` of them."""
        return hard_keep(logits, areas, self.config.min_kept_regions)

    @torch.no_grad()
    def prepare_query(self, images: Tensor, regions: Tensor) -> TauQuery:
        """Run the selector backbone and the head's tau-free part once (eval mode), for :meth:`query_outputs`."""
        features = self.selector.features(images)
        areas = region_areas(regions, self.config.max_regions)
        head = self.selector.head_cache(features, regions, areas)
        return TauQuery(head, areas, regions.shape[-2] * regions.shape[-1])

    @torch.no_grad()
    def query_outputs(self, query: TauQuery, tau: Tensor) -> RegionOutputs:
        """Region outputs at budgets ``tau`` (B,) from the cached head: the values of :meth:`region_outputs` up to
        rounding, at a small fraction of its cost (see :meth:`Selector.region_head`)."""
        per_region = self.selector.region_head(query.head, tau)
        areas = query.areas.to(per_region.dtype)
        logits = per_region[..., 0]
        expected = (torch.sigmoid(logits) * areas).sum(-1) / query.pixels
        return RegionOutputs(logits, per_region[..., 1:], areas, expected)

    @torch.no_grad()
    def search_tau(
        self,
        images: Tensor,
        regions: Tensor,
        delta: float | None = None,
        grid: tuple[float, ...] | None = None,
        method: str = "endpoints",
    ) -> SearchResult:
        """Per image, the smallest tau on ``grid`` whose hard-mask prediction has top probability >= delta.

        ``method="grid"`` walks the grid upwards and re-evaluates only images not yet certain (the spec's
        search, the reference). ``"endpoints"`` (the default) classifies the first and last grid points and
        searches further only where a middle point may be certain (:func:`.search.endpoint_search`).
        ``"bisection"`` halves the grid interval per step, assuming certainty grows with tau. Images that are
        never certain get the largest tau. In fixed-tau mode no search is done.

        All run the head through its cache (:meth:`prepare_query`) and run the classifier on an image only when
        its mask differs from the last mask classified for it (the same input gives the same logits), so
        ``evaluations`` counts classifier passes per image.
        """
        delta = self.config.delta if delta is None else delta
        if self.config.tau_mode == "fixed":
            grid = (self.config.fixed_tau,)
        else:
            grid = self.config.tau_grid if grid is None else tuple(sorted(grid))
        if method not in SEARCH_METHODS:
            raise ValueError(f"unknown tau search method '{method}': use one of {', '.join(SEARCH_METHODS)}")
        evaluator = MaskEvaluator(self, images, regions, self.prepare_query(images, regions), grid)
        if method == "grid" or len(grid) == 1:
            return grid_search(evaluator, delta)
        if method == "endpoints":
            return endpoint_search(evaluator, delta)
        return bisection_search(evaluator, delta)

    @torch.no_grad()
    def explain(
        self,
        images: Tensor,
        target: int | Tensor | None = None,
        regions: Tensor | None = None,
        *,
        delta: float | None = None,
        tau: float | None = None,
        grid: tuple[float, ...] | None = None,
        method: str = "endpoints",
    ) -> Explanation:
        """Predict with hard masks and explain by what the classifier saw, as an :class:`Explanation`.

        ``images`` (B,3,H,W) in [0,1]; ``regions`` (B,H,W) label maps (computed with the configured partition
        if omitted). By default tau is searched per image at certainty ``delta`` over ``grid`` (the configured
        grid if None) with the search ``method``; a fixed ``tau`` skips the search. The explanation of any
        ``target`` is the same kept input (P2P explains its own prediction; ``target`` is only recorded).

        ``keep`` is the hard pixel mask the classifier saw; ``scores`` are ``sigmoid(mu_k)`` per region slot (0 for
        empty slots) and ``pixel_map`` spreads them over the pixels; ``evaluations`` counts head + classifier runs
        per image; ``extras`` hold the chosen ``tau``, the region ``embeddings`` and the region ``correlation``
        matrix of ``Sigma = E E^T + jitter I``.
        """
        check_images(images)
        started = time.perf_counter()
        was_training = self.training
        switch = any(module.training for module in self.modules())  # eval() and back walk every module: 1.8 ms
        if switch:
            self.eval()
        try:
            if regions is None:
                regions = partition_batch(images, make_partitioner(**self.config.partition))
            regions = regions.to(images.device)
            if tau is not None:
                features = self.selector.features(images)
                taus = torch.full((len(images),), float(tau), device=images.device)
                logits, outputs = self.classify_at(features, images, regions, taus)
                search = SearchResult(taus, logits, outputs.logits, outputs.embeddings, torch.ones_like(taus).long())
            else:
                search = self.search_tau(images, regions, delta=delta, grid=grid, method=method)
        finally:
            if switch:
                self.train(was_training)
        areas = region_areas(regions, self.config.max_regions)
        present = areas > 0
        kept = self.hard_keep(search.region_logits, areas)
        probabilities = search.logits.float().softmax(-1)
        predicted = probabilities.argmax(-1)
        scores = torch.sigmoid(search.region_logits.float()) * present
        settings = {"tau": float(tau)} if tau is not None else {"delta": self.config.delta if delta is None else delta,
                                                                 "search": method}  # fmt: skip
        return Explanation(
            method="p2p",
            predicted=predicted,
            target=resolve_target(target, predicted),
            pixel_map=region_to_pixel(scores, regions),
            regions=regions,
            scores=scores,
            order=order_from_scores(scores, present),
            keep=region_to_pixel(kept, regions),
            probabilities=probabilities,
            evaluations=search.evaluations.float(),
            seconds=time.perf_counter() - started,
            params={**settings, "partition": self.config.partition},
            extras={
                "tau": search.tau.float(),
                "embeddings": search.embeddings.float(),
                "correlation": region_correlation(search.embeddings.float(), self.config.jitter),
            },
        )


def _per_sample(images: Tensor, samples: int) -> Tensor:
    """``images`` repeated for each of ``samples`` masks (no copy for one: the tau search's case)."""
    return images if samples == 1 else images.repeat_interleave(samples, dim=0)


def region_correlation(embeddings: Tensor, jitter: float) -> Tensor:
    """Correlation matrix (B, K, K) of ``Sigma = E E^T + jitter I``."""
    covariance = torch.einsum("bkd,bld->bkl", embeddings, embeddings)
    covariance = covariance + jitter * torch.eye(embeddings.shape[1], device=embeddings.device)
    scale = covariance.diagonal(dim1=1, dim2=2).clamp(min=1e-12).sqrt()
    return covariance / (scale[:, :, None] * scale[:, None, :])
