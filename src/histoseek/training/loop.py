"""``histoseek train``: a self-supervised warm-up, then the multi-loss stage; resumable.

Each epoch writes ``last.pt`` (model, loss heads, optimiser, schedule, RNG states) so a run
killed at any point continues from its last finished epoch with the same command, plus a
row of ``metrics.csv`` and a fresh ``loss_curve.png``. The best epoch by validation score
(held-out *training* sources: the test split is never read) is exported to
``best.safetensors`` in fp16.
"""

from __future__ import annotations

import csv
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from histoseek.encoders.torch_tower import resolve_device
from histoseek.models.factory import create_model, get_model_config, save_weights
from histoseek.training.augment import train_transform
from histoseek.training.config import RunConfig
from histoseek.training.data import TrainingPack, TwoViewDataset, decode_jpeg
from histoseek.training.feature_cache import (
    CachedTwoViewDataset,
    FeatureCache,
    build_feature_cache,
)
from histoseek.training.losses import (
    FGCRLoss,
    HierarchicalContrast,
    KnowledgeAlignment,
    LossWeights,
    NTXent,
    SubCenterArcFace,
    combine,
)
from histoseek.training.validate import validation_scores

CHECKPOINT = "last.pt"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class LossHeads(torch.nn.Module):
    """Every loss with parameters lives here so one optimiser and one checkpoint hold all."""

    def __init__(self, embed_dim: int, n_classes: int, knowledge_margin: float = 0.0) -> None:
        super().__init__()
        self.arcface = SubCenterArcFace(embed_dim, max(n_classes, 1))
        self.knowledge = KnowledgeAlignment(temperature=0.07, learnable=True,
                                            margin=knowledge_margin)
        self.fgcr = FGCRLoss(temperature=0.07)
        self.hierarchical = HierarchicalContrast(temperature=0.1)
        self.simclr = NTXent(temperature=0.2)


def _seen_classes(pack: TrainingPack, withhold: tuple[str, ...]) -> tuple[list[int], np.ndarray]:
    """Class indices trained with labels, and a map old label → new label (or -1)."""
    unknown = sorted(set(withhold) - set(pack.classes))
    if unknown:
        from histoseek.errors import InputError

        raise InputError(f"data.withhold: class(es) {unknown} are not in the pack "
                         f"{pack.classes}; fix the training config's withhold list")
    seen = [i for i, c in enumerate(pack.classes) if c not in withhold]
    remap = np.full(len(pack.classes) + 1, -1, np.int64)  # index -1 (unlabelled) maps to -1
    for new, old in enumerate(seen):
        remap[old] = new
    return seen, remap


def trunk_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the backbone and neck run in; pooling, heads and losses stay fp32."""
    if precision not in ("auto", "fp32", "bf16"):
        from histoseek.errors import InputError

        raise InputError(f"train.precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "auto":
        native = device.type == "cpu" and torch.backends.mkldnn.is_available() and bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported())
        return torch.bfloat16 if native else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def step_losses(model: torch.nn.Module, heads: LossHeads, batch: dict[str, torch.Tensor],
                weights: LossWeights, text: dict[str, torch.Tensor], device: torch.device,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, dict[str, float]]:
    """One batch through the model and every enabled loss.

    A batch holds either pixels (``view1``, ``view2``) or cached frozen maps (``cached1``,
    ``cached2``, see ``feature_cache``); the latter runs only the tower's trainable part.
    """
    cached = "cached1" in batch
    n = len(batch["label"])
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        if cached:
            frozen = [torch.cat([a, b]).to(device, non_blocking=True)
                      .contiguous(memory_format=torch.channels_last)
                      for a, b in zip(batch["cached1"], batch["cached2"], strict=True)]
            fmap = model.image.tuned_feature_map(frozen)
        else:
            x = torch.cat([batch["view1"], batch["view2"]]).to(device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)  # oneDNN/cuDNN's fast layout
            fmap = model.image.feature_map(x)
    fmap = fmap.float()  # GeM's power and the losses' softmaxes want fp32
    emb = model.image.embed_map(fmap)
    labels = batch["label"].to(device)
    labels2 = torch.cat([labels, labels])
    parts: dict[str, torch.Tensor] = {}
    if weights.simclr > 0:
        parts["simclr"] = heads.simclr(emb)
    if weights.hierarchical > 0:
        ids = {k: torch.cat([batch[k], batch[k]]).to(device) for k in ("tile", "slide", "patient")}
        parts["hierarchical"] = heads.hierarchical(emb, ids["tile"], ids["slide"],
                                                   ids["patient"]).total
    labelled = labels2 >= 0
    needs_labels = weights.arcface > 0 or weights.knowledge > 0 or weights.fgcr > 0
    if needs_labels and int(labelled[:n].sum()) >= 2:
        if weights.arcface > 0:
            parts["arcface"] = heads.arcface(emb[labelled], labels2[labelled])
        class_text = None
        if weights.knowledge > 0 or weights.fgcr > 0:
            class_text = model.text(text["prompt_emb"])  # [C, P, D], the tuned space
        if weights.knowledge > 0:
            parts["knowledge"] = heads.knowledge(emb[labelled], labels2[labelled], class_text,
                                                 text["prompt_mask"])
        if weights.fgcr > 0:
            first = labelled[:n]
            lab = labels[first]
            prompt_pick = torch.multinomial(text["prompt_mask"][lab].float(), 1).squeeze(1)
            tile_text = class_text[lab, prompt_pick]
            attributes = model.text(text["attribute_emb"])[lab]  # [b, A, D]
            regions = model.image.region_embeddings(fmap[:n][first])
            parts["fgcr"] = heads.fgcr(emb[:n][first], tile_text, regions, attributes,
                                       text["attribute_mask"][lab], text_ids=lab,
                                       attribute_ids=lab).total
    for name, w in weights.items():
        if w > 0 and name not in parts:
            parts[name] = emb.sum() * 0.0  # batch without the labels this loss needs
    total = combine(parts, weights)
    return total, {k: float(v.detach()) for k, v in parts.items()}


def train(config: RunConfig, out: Path, progress: bool = True) -> Path:
    """Run (or resume) training; return the path of the best exported weights."""
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    device = resolve_device(config.train.device)
    pack = TrainingPack.load(Path(config.data.pack))
    seen, remap = _seen_classes(pack, config.data.withhold)
    labels = remap[pack.label]
    pack.label = labels
    pre = get_model_config(config.model)["preprocess"]
    mean, std, px = tuple(pre["mean"]), tuple(pre["std"]), int(pre["input_px"])
    model = create_model(config.model, **config.model_overrides).to(device).train()
    model = model.to(memory_format=torch.channels_last)
    dtype = trunk_dtype(config.train.precision, device)
    heads = LossHeads(model.image.tuned_dim, len(seen),
                      config.train.knowledge_margin).to(device).train()
    text = {
        "prompt_emb": torch.from_numpy(pack.prompt_emb[seen]).to(device),
        "prompt_mask": torch.from_numpy(pack.prompt_mask[seen]).to(device),
        "attribute_emb": torch.from_numpy(pack.attribute_emb[seen]).to(device),
        "attribute_mask": torch.from_numpy(pack.attribute_mask[seen]).to(device),
    }
    train_idx = np.flatnonzero(~pack.is_val)
    val_idx = np.flatnonzero(pack.is_val & (pack.label >= 0))
    val_tiles = np.stack([decode_jpeg(pack.jpeg[i]) for i in val_idx])
    transform = train_transform(px, mean, std, config.train.augment_strength)
    num_workers = config.train.num_workers
    if config.train.feature_cache_views:
        if not hasattr(model.image, "frozen_features"):
            from histoseek.errors import InputError

            raise InputError(f"train.feature_cache_views needs a model with a frozen trunk "
                             f"(tower: fusion); '{config.model}' trains every layer")
        dataset = CachedTwoViewDataset(pack, _feature_cache(
            model, pack, train_idx, transform, config.train.feature_cache_views, device,
            out, progress, config.seed), seed=config.seed)
        num_workers = 0  # the maps are in memory; workers would only copy them
    else:
        dataset = TwoViewDataset(pack, train_idx, transform)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = None
    if config.train.balanced_sampling:
        # rare classes (normal, serrated adenoma: ~3% of tiles each) are drawn as often as
        # common ones; unlabelled tiles keep the average weight
        labels_tr = pack.label[train_idx]
        counts = np.bincount(labels_tr[labels_tr >= 0], minlength=len(seen)).astype(float)
        per_tile = np.where(labels_tr >= 0, 1.0 / np.maximum(counts[labels_tr.clip(0)], 1), 0)
        per_tile[labels_tr < 0] = per_tile[labels_tr >= 0].mean()
        sampler = torch.utils.data.WeightedRandomSampler(
            torch.from_numpy(per_tile), num_samples=len(train_idx), replacement=True,
            generator=generator)
    loader = DataLoader(dataset, batch_size=config.train.batch_size, shuffle=sampler is None,
                        sampler=sampler,
                        drop_last=True, num_workers=num_workers,
                        persistent_workers=num_workers > 0,
                        pin_memory=device.type == "cuda",
                        generator=generator)
    steps_per_epoch = len(loader)
    if config.train.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.train.max_steps_per_epoch)
    total_epochs = config.train.ssl_epochs + config.train.epochs
    total_steps = max(1, total_epochs * steps_per_epoch)
    warmup = config.train.warmup_epochs * steps_per_epoch
    params = [p for p in list(model.parameters()) + list(heads.parameters()) if p.requires_grad]
    pretrained = _pretrained_trainable(model)
    pretrained_ids = {id(p) for p in pretrained}
    groups = [{"params": [p for p in params if id(p) not in pretrained_ids]}]
    if pretrained:
        groups.append({"params": pretrained,
                       "lr": config.train.lr * config.train.backbone_lr_scale})
    optimiser = torch.optim.AdamW(groups, lr=config.train.lr,
                                  weight_decay=config.train.weight_decay)
    anchor = [p.detach().clone() for p in pretrained] if config.train.l2sp_weight > 0 else []
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / max(
        warmup, 1)) * 0.5 * (1 + math.cos(math.pi * min(s / total_steps, 1.0))))
    ema = None
    if config.train.ema_decay > 0:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.train.ema_decay),
                            use_buffers=True)
    exported = ema.module if ema is not None else model  # what validation sees and export saves
    state = {"epoch": 0, "best": -1.0, "best_epoch": -1}
    ckpt_path = out / CHECKPOINT
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        heads.load_state_dict(ckpt["heads"])
        optimiser.load_state_dict(ckpt["optimiser"])
        schedule.load_state_dict(ckpt["schedule"])
        state = ckpt["state"]
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        np.random.set_state(ckpt["rng"]["numpy"])
        random.setstate(ckpt["rng"]["python"])
        print(f"resuming {out} after epoch {state['epoch']}", flush=True)
    print(f"training on {device} ({str(dtype).removeprefix('torch.')} trunk, "
          f"{steps_per_epoch} steps/epoch, {total_epochs} epochs)", flush=True)
    metrics_path = out / "metrics.csv"
    # the pack's tiling goes with the run: the scale and grouping its weights learned from
    record = {**asdict(config), "pack_tiling": pack.tiling.to_dict()}
    (out / "config.json").write_text(__import__("json").dumps(record, indent=1, default=str))
    for epoch in range(state["epoch"], total_epochs):
        stage = "ssl" if epoch < config.train.ssl_epochs else "supervised"
        weights = config.ssl_losses if stage == "ssl" else config.losses
        model.train()
        heads.train()
        sums: dict[str, float] = {}
        started = time.perf_counter()
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{total_epochs} {stage}",
                   disable=not progress, dynamic_ncols=True, leave=False)
        for step, batch in enumerate(loader):
            if step >= steps_per_epoch:
                break
            loss, parts = step_losses(model, heads, batch, weights, text, device, dtype)
            if anchor:
                l2sp = sum(((p - a) ** 2).sum() for p, a in zip(pretrained, anchor,
                                                                 strict=True))
                parts["l2sp"] = float(l2sp.detach())
                loss = loss + config.train.l2sp_weight * l2sp
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimiser.step()
            schedule.step()
            if ema is not None:
                ema.update_parameters(model)
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
            bar.update(1)
        bar.close()
        row = {"epoch": epoch + 1, "stage": stage, "seconds": round(time.perf_counter() -
                                                                     started, 1),
               "lr": optimiser.param_groups[0]["lr"],
               **{k: v / max(steps_per_epoch, 1) for k, v in sums.items()}}
        exported.eval()
        row.update(validation_scores(exported, val_tiles, pack.label[val_idx],
                                     pack.patient[val_idx], text, (px, mean, std), device))
        score = row["val_score"]
        _append_row(metrics_path, row)
        state["epoch"] = epoch + 1
        if stage == "supervised" and score > state["best"]:
            state.update(best=score, best_epoch=epoch + 1)
            save_weights(exported, out / "best.safetensors", architecture=config.model_overrides)
        save_weights(exported, out / "last.safetensors", architecture=config.model_overrides)
        torch.save({"model": model.state_dict(), "heads": heads.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                    "state": state, "rng": {"torch": torch.get_rng_state(),
                                            "numpy": np.random.get_state(),
                                            "python": random.getstate()}},
                   out / (CHECKPOINT + ".tmp"))
        (out / (CHECKPOINT + ".tmp")).replace(ckpt_path)
        from histoseek.training.curves import plot_curves

        plot_curves(metrics_path, out / "loss_curve.png")
        print(f"epoch {epoch + 1}/{total_epochs} {stage}: loss {row.get('loss', 0):.4f} "
              f"val mMV@5 {row['val_mMV@5']:.3f} val zero-shot bal.acc "
              f"{row['val_zs_bal_acc']:.3f} ({row['seconds']} s)", flush=True)
    best = out / "best.safetensors"
    return best if best.is_file() else out / "last.safetensors"


def _pretrained_trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Trainable parameters that start from pretrained weights (v2's tuned blocks)."""
    blocks = getattr(model.image, "tuned_blocks", None)
    return [p for p in blocks.parameters() if p.requires_grad] if blocks is not None else []


def _feature_cache(model: torch.nn.Module, pack: TrainingPack, train_idx: np.ndarray,
                   transform: callable, views: int, device: torch.device, out: Path,  # type: ignore[valid-type]
                   progress: bool, seed: int) -> FeatureCache:
    """Load the run's cache of frozen maps, or build it (seeded, so a rebuild is identical)."""
    path = out / f"feature_cache-{views}views.pt"
    if path.is_file():
        cache = FeatureCache.load(path)
        if np.array_equal(cache.tiles, train_idx) and cache.views == views:
            return cache
    with torch.random.fork_rng(devices=[]):  # the run's random stream is left untouched
        torch.manual_seed(seed)  # the views depend on the seed alone, not on what ran before
        cache = build_feature_cache(model.image, pack, train_idx, transform, views, device,
                                    progress=progress)
    cache.save(path)
    return cache


def _append_row(path: Path, row: dict[str, object]) -> None:
    rows = []
    if path.is_file():
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    rows = [r for r in rows if int(r["epoch"]) < int(row["epoch"])] + [row]  # resume-safe
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
