"""Tests of histoseek.training.losses on tiny seeded CPU tensors."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from histoseek.training.losses import (
    ClipInfoNCE,
    FGCRLoss,
    FGCRParts,
    HierarchicalContrast,
    HierarchicalParts,
    KnowledgeAlignment,
    LogitScale,
    LossWeights,
    NTXent,
    SubCenterArcFace,
    SupCon,
    combine,
)
from histoseek.training.losses._functional import grouped_cross_entropy


def unit(*shape: int, seed: int) -> Tensor:
    """Seeded random unit vectors along the last dimension."""
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=gen), dim=-1)


def leaf(t: Tensor) -> Tensor:
    return t.clone().requires_grad_(True)


# --- every loss: finite scalar, gradient reaches the inputs -------------------------------


def _arcface() -> tuple[Tensor, list[Tensor]]:
    emb = leaf(unit(6, 8, seed=0))
    return SubCenterArcFace(8, 3)(emb, torch.tensor([0, 1, 2, 0, 1, 2])), [emb]


def _knowledge() -> tuple[Tensor, list[Tensor]]:
    img, txt = leaf(unit(5, 8, seed=1)), leaf(unit(3, 4, 8, seed=2))
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 2:] = False
    loss = KnowledgeAlignment(learnable=True)(img, torch.tensor([0, 1, 2, 1, 0]), txt, mask)
    return loss, [img, txt]


def _clip() -> tuple[Tensor, list[Tensor]]:
    img, txt = leaf(unit(4, 8, seed=3)), leaf(unit(4, 8, seed=4))
    return ClipInfoNCE()(img, txt, torch.tensor([0, 0, 1, 2])), [img, txt]


def _fgcr() -> tuple[Tensor, list[Tensor]]:
    img, txt = leaf(unit(4, 8, seed=5)), leaf(unit(4, 8, seed=6))
    reg, att = leaf(unit(4, 3, 8, seed=7)), leaf(unit(4, 5, 8, seed=8))
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[0, 3:] = False
    parts = FGCRLoss()(img, txt, reg, att, mask, attribute_ids=torch.tensor([0, 1, 0, 2]))
    return parts.total, [img, txt, reg, att]


def _hierarchical() -> tuple[Tensor, list[Tensor]]:
    emb = leaf(unit(8, 8, seed=9))
    tiles = torch.arange(4).repeat(2)
    parts = HierarchicalContrast()(emb, tiles, tiles // 2, tiles // 4)
    return parts.total, [emb]


def _simclr() -> tuple[Tensor, list[Tensor]]:
    emb = leaf(unit(6, 8, seed=10))
    return NTXent()(emb), [emb]


@pytest.mark.parametrize(
    "make",
    [_arcface, _knowledge, _clip, _fgcr, _hierarchical, _simclr],
    ids=["arcface", "knowledge", "clip", "fgcr", "hierarchical", "simclr"],
)
def test_finite_scalar_with_gradient(make: Callable[[], tuple[Tensor, list[Tensor]]]) -> None:
    loss, inputs = make()
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for t in inputs:
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


# --- shape errors ------------------------------------------------------------------------

E8 = unit(4, 8, seed=11)
LABELS = torch.tensor([0, 1, 0, 1])

BAD_CALLS: dict[str, Callable[[], object]] = {
    "arcface-dim": lambda: SubCenterArcFace(8, 2)(unit(4, 7, seed=0), LABELS),
    "arcface-labels-len": lambda: SubCenterArcFace(8, 2)(E8, LABELS[:3]),
    "arcface-labels-float": lambda: SubCenterArcFace(8, 2)(E8, LABELS.float()),
    "arcface-label-range": lambda: SubCenterArcFace(8, 2)(E8, torch.tensor([0, 1, 2, 0])),
    "knowledge-dim": lambda: KnowledgeAlignment()(E8, LABELS, unit(2, 3, 7, seed=0)),
    "knowledge-2d-text": lambda: KnowledgeAlignment()(E8, LABELS, unit(2, 8, seed=0)),
    "knowledge-mask-shape": lambda: KnowledgeAlignment()(
        E8, LABELS, unit(2, 3, 8, seed=0), torch.ones(2, 2, dtype=torch.bool)
    ),
    "knowledge-empty-class": lambda: KnowledgeAlignment()(
        E8, LABELS, unit(2, 3, 8, seed=0), torch.tensor([[True] * 3, [False] * 3])
    ),
    "clip-rows": lambda: ClipInfoNCE()(E8, unit(3, 8, seed=0)),
    "clip-ids": lambda: ClipInfoNCE()(E8, E8, torch.tensor([0, 1, 2])),
    "fgcr-regions": lambda: FGCRLoss()(E8, E8, unit(4, 8, seed=0), unit(4, 2, 8, seed=1)),
    "fgcr-attr-batch": lambda: FGCRLoss()(E8, E8, unit(4, 2, 8, seed=0), unit(3, 2, 8, seed=1)),
    "fgcr-mask-dtype": lambda: FGCRLoss()(
        E8, E8, unit(4, 2, 8, seed=0), unit(4, 2, 8, seed=1), torch.ones(4, 2)
    ),
    "hier-ids": lambda: HierarchicalContrast()(E8, LABELS, LABELS, LABELS[:2]),
    "supcon-one-row": lambda: SupCon()(E8[:1], LABELS[:1]),
    "ntxent-odd": lambda: NTXent()(unit(5, 8, seed=0)),
    "ntxent-1d": lambda: NTXent()(E8[0]),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_shape_errors_raise_value_error(name: str) -> None:
    with pytest.raises(ValueError):
        BAD_CALLS[name]()


def test_bad_constructor_arguments_raise() -> None:
    with pytest.raises(ValueError):
        SubCenterArcFace(8, 0)
    with pytest.raises(ValueError):
        LogitScale(temperature=0.005, learnable=True, min_temperature=0.01)
    with pytest.raises(ValueError):
        HierarchicalContrast(weights=(1.0, -1.0, 0.0))
    with pytest.raises(ValueError):
        LossWeights(clip=-1.0)


# --- aligned inputs score lower than shuffled ones -----------------------------------------


def test_knowledge_lower_for_own_prototype() -> None:
    text = unit(3, 4, 16, seed=20)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    images = KnowledgeAlignment.prototypes(text)[labels]
    loss = KnowledgeAlignment()
    assert loss(images, labels, text) < loss(images, (labels + 1) % 3, text)


def test_knowledge_ignores_masked_prompts() -> None:
    text = unit(2, 3, 8, seed=21)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    padded = text.clone()
    padded[~mask] = unit(3, 8, seed=22)
    images, labels = unit(4, 8, seed=23), LABELS
    loss = KnowledgeAlignment()
    torch.testing.assert_close(loss(images, labels, text, mask), loss(images, labels, padded, mask))


def test_knowledge_margin_matches_shifted_logits_and_keeps_the_gradient() -> None:
    text = unit(3, 4, 16, seed=27)
    labels = torch.tensor([0, 1, 2, 0])
    images = leaf(unit(4, 16, seed=28))
    margin, temperature = 0.3, 0.1
    loss = KnowledgeAlignment(temperature=temperature, margin=margin)(images, labels, text)
    cosines = images @ KnowledgeAlignment.prototypes(text).t()
    expected = F.cross_entropy((cosines - margin * F.one_hot(labels, 3)) / temperature, labels)
    torch.testing.assert_close(loss, expected)
    assert loss > KnowledgeAlignment(temperature=temperature)(images, labels, text)
    loss.backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()


@pytest.mark.parametrize("margin", [-0.1, 1.0])
def test_knowledge_margin_out_of_range_fails(margin: float) -> None:
    with pytest.raises(ValueError, match="margin"):
        KnowledgeAlignment(margin=margin)


def test_clip_lower_for_matching_pairs() -> None:
    images = unit(6, 16, seed=24)
    loss = ClipInfoNCE(learnable=False)
    assert loss(images, images) < loss(images, images.roll(1, dims=0))


def test_fgcr_lower_when_regions_match_own_attributes() -> None:
    images, attributes = unit(4, 16, seed=25), unit(4, 3, 16, seed=26)
    loss = FGCRLoss()
    aligned = loss(images, images, attributes.clone(), attributes)
    swapped = loss(images, images, attributes.roll(1, dims=0), attributes)
    assert isinstance(aligned, FGCRParts)
    assert aligned.region < swapped.region
    torch.testing.assert_close(aligned.instance, swapped.instance)
    torch.testing.assert_close(aligned.total, aligned.instance + aligned.region)


def test_fgcr_ignores_masked_attributes() -> None:
    images, regions = unit(3, 8, seed=27), unit(3, 2, 8, seed=28)
    attributes = unit(3, 4, 8, seed=29)
    mask = torch.tensor([[True] * 4, [True, True, False, False], [True, False, False, False]])
    padded = attributes.clone()
    padded[~mask] = unit(5, 8, seed=30)
    loss = FGCRLoss()
    a = loss(images, images, regions, attributes, mask)
    b = loss(images, images, regions, padded, mask)
    torch.testing.assert_close(a.region, b.region)


def test_contrast_lower_when_views_agree() -> None:
    tiles = unit(4, 16, seed=31)
    close = torch.cat([tiles, F.normalize(tiles + 0.05 * unit(4, 16, seed=32), dim=-1)])
    far = unit(8, 16, seed=33)
    assert NTXent()(close) < NTXent()(far)
    ids = torch.arange(4).repeat(2)
    hier = HierarchicalContrast()
    assert hier(close, ids, ids, ids).tile < hier(far, ids, ids, ids).tile


# --- hand-computed references --------------------------------------------------------------


def test_clip_without_ids_is_symmetric_cross_entropy() -> None:
    images, texts = unit(5, 8, seed=40), unit(5, 8, seed=41)
    logits = images @ texts.t() / 0.07
    target = torch.arange(5)
    expected = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    loss = ClipInfoNCE()
    torch.testing.assert_close(loss(images, texts), expected)
    torch.testing.assert_close(loss(images, texts, torch.tensor([7, 3, 9, 1, 4])), expected)


def test_clip_repeated_texts_are_not_negatives() -> None:
    images = unit(3, 4, seed=42)
    distinct = unit(2, 4, seed=43)  # text A (images 0 and 1) and text B (image 2)
    texts = distinct[[0, 0, 1]]
    loss = ClipInfoNCE(learnable=False)(images, texts, torch.tensor([5, 5, 8]))

    # By hand on the de-duplicated batch: 3 images x 2 distinct texts.
    s = images @ distinct.t() / 0.07  # s[i, u]

    def ce(scores: list[float], target: int) -> float:
        return -scores[target] + math.log(sum(math.exp(x) for x in scores))

    i2t = (ce(s[0].tolist(), 0) + ce(s[1].tolist(), 0) + ce(s[2].tolist(), 1)) / 3
    col_a, col_b = s[:, 0].tolist(), s[:, 1].tolist()
    text_a = 0.5 * (ce(col_a, 0) + ce(col_a, 1))  # text A: images 0 and 1 both positive
    text_b = ce(col_b, 2)
    t2i = (text_a + text_b) / 2
    assert loss.item() == pytest.approx(0.5 * (i2t + t2i), rel=1e-5)
    # Without ids the repeat is a negative of itself and the loss is higher.
    assert ClipInfoNCE(learnable=False)(images, texts).item() > loss.item()


def test_grouped_cross_entropy_matches_naive_loop() -> None:
    gen = torch.Generator().manual_seed(47)
    logits = 80.0 * torch.randn(5, 5, generator=gen)  # large, as with a logit scale of 100
    ids = torch.tensor([3, 1, 3, 3, 1])
    expected = []
    for i in range(5):
        pooled = {
            u: torch.logsumexp(logits[i, ids == u], 0) - math.log(int((ids == u).sum()))
            for u in (1, 3)
        }
        all_groups = torch.logsumexp(torch.stack(list(pooled.values())), 0)
        expected.append(all_groups - pooled[int(ids[i])])
    got = grouped_cross_entropy(logits, ids)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, torch.stack(expected))


def test_supcon_matches_hand_computation() -> None:
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.8, 0.6]])
    labels = torch.tensor([0, 0, 1, 1])
    t = 0.5
    dots = (emb @ emb.t()).tolist()
    total = 0.0
    for i in range(4):
        denominator = sum(math.exp(dots[i][a] / t) for a in range(4) if a != i)
        p = {0: 1, 1: 0, 2: 3, 3: 2}[i]  # one positive each
        total += -math.log(math.exp(dots[i][p] / t) / denominator)
    assert SupCon(temperature=t)(emb, labels).item() == pytest.approx(total / 4, rel=1e-6)
    # Row 2 has no positive in a 3-row batch: it is skipped, but stays a negative.
    three = SupCon(temperature=t)(emb[:3], torch.tensor([0, 0, 1]))
    terms = []
    for i, p in ((0, 1), (1, 0)):
        den = sum(math.exp(dots[i][a] / t) for a in range(3) if a != i)
        terms.append(-math.log(math.exp(dots[i][p] / t) / den))
    assert three.item() == pytest.approx(sum(terms) / 2, rel=1e-6)


def test_ntxent_is_tile_level_supcon() -> None:
    emb = unit(6, 8, seed=44)
    expected = SupCon(temperature=0.2)(emb, torch.tensor([0, 1, 2, 0, 1, 2]))
    torch.testing.assert_close(NTXent(temperature=0.2)(emb), expected)


def test_hierarchical_skips_levels_without_positives() -> None:
    emb = leaf(unit(6, 8, seed=45))
    tiles = torch.arange(3).repeat(2)
    unique = torch.arange(6)
    parts = HierarchicalContrast(weights=(1.0, 0.5, 0.5))(emb, tiles, unique, unique + 100)
    assert isinstance(parts, HierarchicalParts)
    assert parts.slide.item() == 0.0 and parts.patient.item() == 0.0
    assert torch.isfinite(parts.total)
    torch.testing.assert_close(parts.total, parts.tile)
    parts.total.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()


def test_hierarchical_weights_sum_levels() -> None:
    emb = unit(8, 8, seed=46)
    tiles = torch.arange(4).repeat(2)
    parts = HierarchicalContrast(weights=(1.0, 0.5, 0.25))(emb, tiles, tiles // 2, tiles // 4)
    torch.testing.assert_close(parts.total, parts.tile + 0.5 * parts.slide + 0.25 * parts.patient)
    torch.testing.assert_close(parts.slide, SupCon(0.1)(emb, tiles // 2))


# --- sub-center ArcFace learns ---------------------------------------------------------------


def test_subcenter_arcface_trains() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(50)
    labels = torch.arange(60) % 2
    offsets = torch.zeros(2, 8)
    offsets[0, 0], offsets[1, 1] = 3.0, 3.0
    points = F.normalize(offsets[labels] + 0.3 * torch.randn(60, 8, generator=gen), dim=-1)
    loss_fn = SubCenterArcFace(8, 2, sub_centers=2, scale=16.0)
    assert loss_fn.centers.shape == (2, 2, 8)
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=0.05)
    first = loss_fn(points, labels).item()
    for _ in range(50):
        optimizer.zero_grad()
        loss = loss_fn(points, labels)
        loss.backward()
        optimizer.step()
    last = loss_fn(points, labels).item()
    assert last < 0.5 * first
    assert (loss_fn.logits(points).argmax(dim=1) == labels).float().mean() > 0.95


# --- combine -----------------------------------------------------------------------------------


def test_combine_weights_enabled_parts() -> None:
    parts = {"clip": torch.tensor(2.0), "arcface": torch.tensor(3.0), "simclr": torch.tensor(9.0)}
    total = combine(parts, LossWeights(clip=0.5, arcface=2.0))
    assert total.item() == pytest.approx(0.5 * 2.0 + 2.0 * 3.0)


def test_combine_raises_on_missing_unknown_or_nothing() -> None:
    with pytest.raises(ValueError, match="fgcr"):
        combine({"clip": torch.tensor(1.0)}, LossWeights(clip=1.0, fgcr=1.0))
    with pytest.raises(ValueError, match="unknown"):
        combine({"clipp": torch.tensor(1.0)}, LossWeights(clip=1.0))
    with pytest.raises(ValueError):
        combine({"clip": torch.tensor(1.0)}, LossWeights())
    with pytest.raises(ValueError):
        combine({"clip": torch.ones(2)}, LossWeights(clip=1.0))
