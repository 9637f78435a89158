"""The P2P model: sampling, masks, loss, schedules, tau search, explain, checkpoints."""

import json
import math

import pytest
import torch

from p2pvision.errors import ConfigError, WeightsError
from p2pvision.models.p2p import P2PConfig, P2PModel, load_p2p, save_p2p
from p2pvision.models.p2p.model import RegionOutputs, relaxed_bernoulli, straight_through
from p2pvision.models.p2p.search import WALK_STEP, MaskEvaluator, hard_keep
from p2pvision.regions import make_partitioner, partition_batch, region_areas

TINY = dict(
    num_classes=4,
    image_size=32,
    classifier="test_resnet",
    selector_backbone="test_resnet",
    selector_levels=(1, 2),
    head_channels=8,
    max_regions=16,
    partition={"name": "grid", "grid": 4},
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return P2PModel(P2PConfig(**TINY)).eval()


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(6, 3, 32, 32, generator=generator)
    return images, partition_batch(images, make_partitioner("grid", grid=4))


def test_schedules_follow_the_paper():
    config = P2PConfig(**TINY)
    assert [config.sparsity_weight(p) for p in (0, 0.1, 0.3, 0.5, 1)] == pytest.approx([0.1, 0.1, 5.05, 10, 10])
    assert [config.temperature(p) for p in (0, 0.25, 0.5, 0.9)] == pytest.approx([1, math.sqrt(0.5), 0.5, 0.5])
    with pytest.raises(ConfigError, match="model.tau_mode: got 'sometimes'; allowed: dynamic, fixed"):
        P2PConfig(**{**TINY, "tau_mode": "sometimes"})
    with pytest.raises(ConfigError, match="unknown key model.lamda"):
        P2PConfig.from_dict({**TINY, "lamda": 1})


def test_logit_samples_have_the_low_rank_plus_jitter_covariance(model):
    torch.manual_seed(0)
    embeddings = torch.randn(1, 5, 3)
    areas = torch.tensor([[10.0, 5, 7, 0, 3]])
    outputs = RegionOutputs(torch.zeros(1, 5), embeddings, areas, torch.zeros(1))
    z = model.sample_logits(outputs, samples=200_000)[0]
    expected = embeddings[0] @ embeddings[0].T + model.config.jitter * torch.eye(5)
    valid = areas[0] > 0
    empirical = torch.cov(z.T)
    assert torch.allclose(empirical[valid][:, valid], expected[valid][:, valid], atol=0.05 * expected.abs().max())
    assert (z[:, ~valid] == 0).all()  # empty slots stay at their logit


def test_relaxed_bernoulli_and_straight_through():
    logits = torch.tensor([-2.0, 0.0, 1.5]).expand(100_000, 3)
    samples = relaxed_bernoulli(logits, temperature=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.allclose((samples > 0.5).float().mean(0), torch.sigmoid(logits[0]), atol=0.01)
    soft = torch.tensor([0.2, 0.7], requires_grad=True)
    hard = straight_through(soft)
    assert hard.tolist() == [0.0, 1.0]
    (hard * torch.tensor([3.0, 5.0])).sum().backward()
    assert soft.grad.tolist() == [3.0, 5.0]


def test_loss_terms_match_the_definitions(model, batch):
    images, regions = batch
    output = model(images, regions, tau=torch.full((6,), 0.3), temperature=0.5)
    labels = torch.arange(6) % 4
    losses = model.loss(output, labels, sparsity_weight=2.0)
    p_bar = output.regions.expected_kept
    excess = (-torch.log(1 - p_bar) + math.log(1 - 0.3)) * (p_bar > 0.3)
    assert losses["sparsity"].item() == pytest.approx(2.0 * excess.mean().item(), rel=1e-5)
    e = output.regions.embeddings
    assert losses["covariance"].item() == pytest.approx(0.01 * (e @ e.transpose(1, 2)).abs().mean().item(), rel=1e-5)
    assert losses["loss"].item() == pytest.approx(sum(losses[k].item() for k in ("ce", "sparsity", "covariance")))
    relaxed = model(images, regions, tau=torch.ones(6), temperature=0.5)
    assert model.loss(relaxed, labels, 2.0)["sparsity"].item() == 0.0  # p_bar <= tau = 1: no penalty


def test_expected_kept_fraction_is_area_weighted(model, batch):
    images, regions = batch
    outputs = model.region_outputs(model.selector.features(images), regions, torch.full((6,), 0.5))
    manual = (torch.sigmoid(outputs.logits) * outputs.areas).sum(1) / (32 * 32)
    assert torch.allclose(outputs.expected_kept, manual)
    assert outputs.areas.sum(1).tolist() == [32 * 32] * 6


def test_test_time_mask_training_sees_what_inference_sees_and_passes_gradients(model, batch):
    images, regions = batch
    tau = torch.full((len(images),), 0.3)
    output = model(images, regions, tau, stochastic=False, temperature=0.5)
    features = model.selector.features(images)
    logits, outputs = model.classify_at(features, images, regions, tau)
    kept = ((outputs.logits > 0) & (outputs.areas > 0)).float()
    assert torch.allclose(output.masks[:, 0], kept, atol=1e-6)  # the inference mask: mu > 0, no sampling
    assert torch.allclose(output.logits, logits, atol=1e-5)
    output.logits.sum().backward()
    # the mask depends on the selector only through the straight-through estimator
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.selector.parameters())
    model.zero_grad()


def test_removed_regions_are_black_and_kept_pixels_untouched(model, batch):
    images, regions = batch
    masks = (torch.arange(16) % 2 == 0).float().expand(6, 1, 16)
    masked = model.masked_images(images, regions, masks)
    keep = (regions % 2 == 0)[:, None].expand_as(images)
    assert torch.equal(masked[keep], images[keep]) and (masked[~keep] == 0).all()


@pytest.fixture(scope="module")
def varied():
    """A tiny model whose masks change with tau: random head weights instead of the zero-initialised FiLM."""
    torch.manual_seed(3)
    varied = P2PModel(P2PConfig(**TINY))
    with torch.no_grad():
        for parameter in [*varied.selector.film.parameters(), varied.selector.out.weight]:
            parameter.normal_(0, 0.5)
        varied.selector.conv[1].running_mean.normal_(0, 0.1)
        varied.selector.conv[1].running_var.uniform_(0.5, 2)
        classifier_head = [m for m in varied.classifier.modules() if isinstance(m, torch.nn.Linear)][-1]
        classifier_head.weight.normal_(0, 1)  # confident enough that some images become 0.84-certain
    return varied.eval()


def test_the_cached_head_gives_the_region_outputs_of_the_full_head(varied):
    generator = torch.Generator().manual_seed(4)
    images = torch.rand(5, 3, 40, 36, generator=generator)  # not a multiple of the feature stride
    regions = partition_batch(images, make_partitioner("slic", n_segments=12))  # irregular, with empty slots
    features = varied.selector.features(images)
    query = varied.prepare_query(images, regions)
    for value in (0.05, 0.35, 1.0):
        tau = torch.full((5,), value)
        full, cached = varied.region_outputs(features, regions, tau), varied.query_outputs(query, tau)
        assert torch.allclose(cached.logits, full.logits, atol=1e-5)
        assert torch.allclose(cached.embeddings, full.embeddings, atol=1e-5)
        assert torch.allclose(cached.expected_kept, full.expected_kept, atol=1e-6)
    assert (query.areas == 0).any() and (cached.logits[query.areas == 0] == 0).all()
    with pytest.raises(RuntimeError, match="eval mode"):
        varied.train().prepare_query(images, regions)
    varied.eval()


def test_additive_conditioning_slides_one_threshold_over_a_fixed_ranking(batch):
    torch.manual_seed(6)
    additive = P2PModel(P2PConfig(**TINY, tau_conditioning="additive"))
    assert additive.selector.film is None and additive.selector.conv[0].in_channels == TINY["head_channels"]
    with torch.no_grad():
        additive.selector.out.weight.normal_(0, 0.5)
    additive.eval()
    images, regions = batch
    features = additive.selector.features(images)
    low, high = (additive.region_outputs(features, regions, torch.full((6,), t)).logits for t in (0.1, 0.9))
    shift = additive.selector.out.weight[0, -1, 0, 0] * 0.8  # the tau input of the last 1x1 convolution
    assert torch.allclose(high - low, shift.expand(6, 16), atol=1e-5)  # the same shift for every region
    cached = additive.query_outputs(additive.prepare_query(images, regions), torch.full((6,), 0.9))
    assert torch.allclose(cached.logits, high, atol=1e-5)


def _plain_walk(model, images, regions, delta):
    """Reference: classify every image at every tau with the full head; the smallest certain tau, and the
    classifier passes a walk up the grid needs when it classifies only masks that changed."""
    features = model.selector.features(images)
    certain, masks, logits = [], [], []
    for value in model.config.tau_grid:
        scores, outputs = model.classify_at(features, images, regions, torch.full((len(images),), value))
        certain.append(scores.softmax(-1).amax(-1) >= delta)
        masks.append(model.hard_keep(outputs.logits, outputs.areas))
        logits.append(scores)
    certain, masks, logits = torch.stack(certain, 1), torch.stack(masks, 1), torch.stack(logits, 1)
    first = torch.where(certain.any(1), certain.float().argmax(1), torch.tensor(len(model.config.tau_grid) - 1))
    changes = torch.cat([torch.ones(len(images), 1, dtype=torch.bool), (masks[:, 1:] != masks[:, :-1]).any(-1)], 1)
    passes = torch.stack([changes[i, : first[i] + 1].sum() for i in range(len(images))])
    return torch.tensor(model.config.tau_grid)[first], logits[torch.arange(len(images)), first], passes


def test_grid_search_is_the_plain_grid_answer_classifying_only_changed_masks(varied, batch, monkeypatch):
    images, regions = batch
    delta = 0.84  # 4 of the 6 images become certain (at tau 0.65-0.7), 2 never do
    expected_tau, expected_logits, expected_passes = _plain_walk(varied, images, regions, delta)
    assert (expected_tau < 1).sum() == 4 and 1 < expected_passes.max() < len(varied.config.tau_grid)
    passes = []
    original = P2PModel.classify_regions
    monkeypatch.setattr(
        P2PModel, "classify_regions", lambda self, x, r, m: passes.append(len(x)) or original(self, x, r, m)
    )
    result = varied.search_tau(images, regions, delta=delta, method="grid")
    assert torch.equal(result.tau, expected_tau)
    assert torch.allclose(result.logits, expected_logits, atol=1e-5)  # the classifier's output at the chosen tau
    assert torch.equal(result.evaluations, expected_passes) and sum(passes) == int(expected_passes.sum())


def test_several_points_per_image_in_one_call_classify_each_changed_mask_once(varied, batch, monkeypatch):
    """The batched walk's step: every image at every grid point in one call gives the logits of the point-by-point
    reference, one classifier pass per change of an image's mask (its first point included), in batched calls of at
    most the query's size."""
    images, regions = batch
    grid = varied.config.tau_grid
    features = varied.selector.features(images)
    reference, masks = [], []
    for value in grid:
        logits, outputs = varied.classify_at(features, images, regions, torch.full((len(images),), value))
        reference.append(logits)
        masks.append(varied.hard_keep(outputs.logits, outputs.areas))
    reference, masks = torch.stack(reference, 1), torch.stack(masks, 1)
    changes = 1 + (masks[:, 1:] != masks[:, :-1]).any(-1).sum(1)
    assert changes.min() < len(grid) and changes.max() > 1  # some masks repeat along the grid, some change
    calls = []
    original = P2PModel.classify_regions
    monkeypatch.setattr(
        P2PModel, "classify_regions", lambda self, x, r, m: calls.append(len(x)) or original(self, x, r, m)
    )
    evaluator = MaskEvaluator(varied, images, regions, varied.prepare_query(images, regions), grid)
    rows = torch.arange(len(images)).repeat_interleave(len(grid))
    points = torch.arange(len(grid)).repeat(len(images))
    confidence = evaluator.confidences(rows, points).view(len(images), len(grid))
    assert torch.allclose(evaluator.logits, reference, atol=1e-5)
    assert torch.allclose(confidence, reference.softmax(-1).amax(-1), atol=1e-6)
    assert torch.equal(evaluator.evaluations, changes) and sum(calls) == int(changes.sum())
    assert calls == [len(images)] * (len(calls) - 1) + [calls[-1]] and len(calls) == math.ceil(sum(calls) / 6)


def test_bisection_agrees_when_certainty_grows_with_tau(model, batch, monkeypatch):
    images, regions = batch
    thresholds = torch.tensor([0.05, 0.3, 0.55, 0.8, 1.0, 2.0])  # image i is certain from tau >= thresholds[i]
    asked = []

    def fake_classify(evaluator, rows, points):
        asked.append(len(rows))
        certain = evaluator.grid[points] >= thresholds[rows] - 1e-6
        evaluator.confidence[rows, points] = torch.where(certain, 1.0, 0.5)
        evaluator.evaluations.index_add_(0, rows, torch.ones_like(rows))

    monkeypatch.setattr(MaskEvaluator, "_classify", fake_classify)
    grid = model.search_tau(images, regions, delta=0.9, method="grid")
    bisection = model.search_tau(images, regions, delta=0.9, method="bisection")
    assert grid.tau.tolist() == pytest.approx([0.05, 0.3, 0.55, 0.8, 1.0, 1.0])
    assert torch.equal(bisection.tau, grid.tau)
    assert bisection.evaluations.max() <= math.ceil(math.log2(20)) + 1 < grid.evaluations.max()


def test_endpoints_search_matches_the_grid_on_the_curves_it_is_built_for(model, batch, monkeypatch):
    images, regions = batch
    curves = torch.full((6, 20), 0.5)  # top-class probability per image and grid point; delta = 0.9
    curves[0, :] = 0.95  # certain from the first point: 1 classification
    curves[1, [3, *range(10, 20)]] = 0.95  # certain at point 3 and from 10 on: a bisection would answer 10
    curves[2, 4:9] = 0.95  # certain in the middle only, and near-certain at the ends (0.85: within the margin)
    curves[2, [0, 19]] = 0.85
    curves[3, :] = 0.3  # never certain, far from it at both ends: first and last only
    curves[4, 12] = 0.95  # certain in the middle only, far from certain at the ends: the rule's blind spot
    curves[5, 19] = 0.95  # certain only at the last point

    def fake_classify(evaluator, rows, points):
        evaluator.confidence[rows, points] = curves[rows, points]
        evaluator.evaluations.index_add_(0, rows, torch.ones_like(rows))  # an image may come with several points

    monkeypatch.setattr(MaskEvaluator, "_classify", fake_classify)
    grid = model.search_tau(images, regions, delta=0.9, method="grid")
    endpoints = model.search_tau(images, regions, delta=0.9)  # the default
    grid_points = [round(t * 20) - 1 for t in grid.tau.tolist()]
    assert grid_points == [0, 3, 4, 19, 12, 19]
    assert [round(t * 20) - 1 for t in endpoints.tau.tolist()] == [0, 3, 4, 19, 19, 19]  # all but the blind spot
    assert endpoints.evaluations[[0, 3, 4]].tolist() == [1, 2, 2]
    # images 1 and 2 walk: their points 1-6 go in one batched call (this fake classifies every point, changed or
    # not); image 5, certain at the last point only, walks every middle point
    assert endpoints.evaluations[[1, 2, 5]].tolist() == [2 + WALK_STEP, 2 + WALK_STEP, 2 + 18]
    assert endpoints.evaluations.sum() < grid.evaluations.sum()


def test_tau_search_runs_the_backbone_once(model, batch, monkeypatch):
    images, regions = batch
    calls = []
    original = model.selector.features
    monkeypatch.setattr(model.selector, "features", lambda x: calls.append(1) or original(x))
    model.search_tau(images, regions, delta=1.0)
    assert len(calls) == 1


def test_explain_returns_the_input_the_classifier_saw(model, batch):
    images, regions = batch
    result = model.explain(images, regions=regions, tau=0.4)
    assert result.predicted.shape == (6,) and result.probabilities.shape == (6, 4)
    assert torch.equal(result.target, result.predicted) and result.method == "p2p"
    kept_regions = model.hard_keep(torch.logit(result.scores.float()), region_areas(regions, 16))
    assert torch.equal(result.keep, torch.stack([kept_regions[i][regions[i]] for i in range(6)]))
    assert torch.allclose(result.kept_fraction, result.keep.flatten(1).double().mean(1))
    features = model.selector.features(images)
    logits, _ = model.classify_at(features, images, regions, torch.full((6,), 0.4))
    assert torch.allclose(result.probabilities, logits.softmax(-1), atol=1e-6)
    correlation = result.extras["correlation"]
    assert torch.allclose(correlation.diagonal(dim1=1, dim2=2), torch.ones(6, 16), atol=1e-5)
    record = result.record(0)
    assert json.loads(json.dumps(record))["tau"] == pytest.approx(0.4) and len(record["scores"]) == 16
    assert "correlation" not in record and record["params"]["tau"] == 0.4
    searched = model.explain(images)  # regions from the configured partition
    assert torch.equal(searched.regions, regions) and (searched.extras["tau"] >= 0.05).all()


def test_explain_runs_in_eval_mode_and_gives_the_training_mode_back(model, batch):
    images, regions = batch
    expected = model.explain(images, regions=regions, delta=0.9)
    model.train()
    try:
        result = model.explain(images, regions=regions, delta=0.9)  # BatchNorm with running statistics: same answer
        assert all(module.training for module in model.modules())
    finally:
        model.eval()
    assert torch.equal(result.probabilities, expected.probabilities) and torch.equal(result.keep, expected.keep)
    model.explain(images, regions=regions, delta=0.9)
    assert not any(module.training for module in model.modules())


def test_the_hard_mask_keeps_at_least_the_top_regions(batch):
    logits = torch.tensor([[-1.0, -3.0, 2.0, 0.5], [-1.0, -0.2, -5.0, -0.1]])
    areas = torch.tensor([[4, 4, 4, 4], [4, 4, 0, 4]])
    assert hard_keep(logits, areas, 1).tolist() == [[False, False, True, True], [False, False, False, True]]
    assert hard_keep(logits, areas, 2)[1].tolist() == [False, True, False, True]  # an absent region never
    assert hard_keep(logits, areas, 0)[1].tolist() == [False] * 4  # the authors' rule: may be empty
    assert hard_keep(logits, areas, 9).sum(-1).tolist() == [4, 3]  # at most the present regions
    images, regions = batch
    torch.manual_seed(0)
    dropping = P2PModel(P2PConfig(**TINY, initial_keep_logit=-50.0)).eval()  # every mu < 0
    for minimum, kept in ((1, 1), (0, 0)):
        dropping.config.min_kept_regions = minimum
        result = dropping.explain(images, regions=regions, tau=0.05)
        assert (result.keep.flatten(1).sum(1) == kept * 64).all()  # one 8x8 grid cell, or none
        features = dropping.selector.features(images)
        logits, _ = dropping.classify_at(features, images, regions, torch.full((6,), 0.05))
        assert torch.allclose(result.probabilities, logits.softmax(-1), atol=1e-6)


def test_checkpoint_round_trip_and_clear_errors(model, batch, tmp_path):
    images, regions = batch
    folder = save_p2p(model, tmp_path / "ckpt")
    loaded = load_p2p(folder)
    assert torch.equal(
        loaded.explain(images, regions=regions, tau=0.3).probabilities,
        model.explain(images, regions=regions, tau=0.3).probabilities,
    )
    with pytest.raises(WeightsError, match="has 4 classes, expected 10"):
        load_p2p(folder, num_classes=10)
    meta = json.loads((folder / "config.json").read_text())
    for change, fragment in [
        ({"format_version": 99}, "format version 99"),
        ({"format": "something"}, "describes format 'something', not 'p2pvision'"),
        ({"config": {**meta["config"], "classifier": "test_efficientnet"}}, "do not fit the architecture"),
        ({"config": {**meta["config"], "num_classes": 7, "class_names": None}}, "do not fit the architecture"),
    ]:
        (folder / "config.json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(WeightsError, match=fragment) as info:
            load_p2p(folder)
        assert "\n" not in str(info.value)
    with pytest.raises(WeightsError, match="does not exist: name a folder with config.json"):
        load_p2p(tmp_path / "nowhere")


def test_initial_keep_logit_starts_by_keeping_most_regions(batch):
    images, regions = batch
    torch.manual_seed(0)
    keeping = P2PModel(P2PConfig(**TINY, initial_keep_logit=3.0)).eval()
    outputs = keeping.region_outputs(keeping.selector.features(images), regions, torch.full((6,), 0.5))
    assert outputs.expected_kept.min() > 0.8
