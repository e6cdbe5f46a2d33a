"""CI smoke test of ``histoseek train``: a few CPU steps on a pack of the bundled demo tiles.

Checks the run folder (metrics, curve, weights), resuming (a finished run does nothing new; a
larger ``--epochs`` continues it), withheld classes, evaluation on a test pack, and config
validation. Not a model-quality test.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

import histoseek
from histoseek.cli import app
from histoseek.errors import InputError
from histoseek.models import create_model
from histoseek.training import loop
from histoseek.training.config import load_config
from histoseek.training.evaluate_pack import evaluate_run
from histoseek.training.pack import build_pack, build_test_pack

LABELS = Path(histoseek.__file__).parent / "demo_data" / "tiles" / "labels.csv"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


@pytest.fixture(scope="module")
def packs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("packs")
    split = root / "split.json"
    build_pack(LABELS, split, [], root / "train.npz", val_fraction=0.34, seed=0)
    build_test_pack(LABELS, split, root / "test.npz")
    return {"root": root, "split": split, "train": root / "train.npz",
            "test": root / "test.npz"}


def write_config(path: Path, packs: dict[str, Path], **changes: Any) -> Path:
    """A configs/quick.yaml look-alike pointing at the demo pack (absolute paths)."""
    config: dict[str, Any] = {
        "name": "smoke", "model": "histoseek-base-v1", "seed": 0,
        "data": {"labels": str(LABELS), "split": str(packs["split"]),
                 "pack": str(packs["train"]), "withhold": [], "val_fraction": 0.34},
        "train": {"ssl_epochs": 1, "epochs": 1, "batch_size": 8, "lr": 0.001,
                  "warmup_epochs": 0, "num_workers": 0, "device": "cpu",
                  "max_steps_per_epoch": 2},
        "ssl_losses": {"simclr": 1.0},
        "losses": {"arcface": 1.0, "knowledge": 1.0, "fgcr": 0.5, "hierarchical": 0.5},
    }
    for section, values in changes.items():
        if isinstance(values, dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    path.write_text(yaml.safe_dump(config))
    return path


def train_cli(config: Path, out: Path, *extra: str) -> Any:
    result = runner.invoke(app, ["train", "--config", str(config), "--out", str(out), *extra])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def metric_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def checkpoint_epoch(run: Path) -> int:
    return int(torch.load(run / "last.pt", map_location="cpu", weights_only=False)
               ["state"]["epoch"])


@pytest.fixture(scope="module")
def run(packs: dict[str, Path]) -> dict[str, Any]:
    out = packs["root"] / "run"
    config = write_config(packs["root"] / "smoke.yaml", packs)
    result = train_cli(config, out)
    return {"out": out, "config": config, "output": result.output}


def test_run_writes_metrics_curve_and_weights(run: dict[str, Any]) -> None:
    out: Path = run["out"]
    rows = metric_rows(out)
    assert [(r["epoch"], r["stage"]) for r in rows] == [("1", "ssl"), ("2", "supervised")]
    for row in rows:
        assert math.isfinite(float(row["loss"]))
        assert 0.0 <= float(row["val_score"]) <= 1.0
    assert math.isfinite(float(rows[0]["simclr"]))
    for name in ("arcface", "knowledge", "fgcr", "hierarchical"):
        assert math.isfinite(float(rows[1][name])), name
    curve = out / "loss_curve.png"
    assert curve.read_bytes()[:8] == PNG_MAGIC
    with Image.open(curve) as image:
        assert image.width > 100 and image.height > 100
    assert checkpoint_epoch(out) == 2
    assert "weights:" in run["output"] and "best.safetensors" in run["output"]


@torch.inference_mode()
def test_best_weights_load_into_the_model(run: dict[str, Any]) -> None:
    model = create_model("histoseek-base-v1", pretrained=run["out"] / "best.safetensors")
    emb = model.encode_image(torch.zeros(1, 3, 224, 224))
    assert emb.shape == (1, 256) and torch.isfinite(emb).all()
    torch.manual_seed(0)  # the run's seed: the same initial weights
    start = create_model("histoseek-base-v1").eval()
    assert not torch.allclose(emb, start.encode_image(torch.zeros(1, 3, 224, 224)), atol=1e-3)


def test_rerun_resumes_and_more_epochs_continue(run: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(run["out"], out)
    best_before = (out / "best.safetensors").read_bytes()

    again = train_cli(run["config"], out)
    assert "resuming" in again.output and "after epoch 2" in again.output
    assert "epoch 1/" not in again.output and "epoch 2/" not in again.output
    assert len(metric_rows(out)) == 2
    assert checkpoint_epoch(out) == 2
    assert (out / "best.safetensors").read_bytes() == best_before

    longer = train_cli(run["config"], out, "--epochs", "2")
    assert "resuming" in longer.output and "epoch 3/3" in longer.output
    rows = metric_rows(out)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[2]["stage"] == "supervised" and math.isfinite(float(rows[2]["loss"]))
    assert checkpoint_epoch(out) == 3


def test_withheld_class_is_invisible_to_the_label_losses(
        packs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen_text: list[int] = []
    seen_labels: list[int] = []
    real_step = loop.step_losses

    def spy(model: Any, heads: Any, batch: dict[str, torch.Tensor], *args: Any,
            **kwargs: Any) -> Any:
        text = args[1] if len(args) > 1 else kwargs["text"]
        seen_text.append(int(text["prompt_emb"].shape[0]))
        seen_labels.extend(batch["label"].tolist())
        assert heads.arcface.num_classes == 5
        return real_step(model, heads, batch, *args, **kwargs)

    monkeypatch.setattr(loop, "step_losses", spy)
    config = write_config(tmp_path / "withhold.yaml", packs,
                          data={"withhold": ["normal"]}, train={"ssl_epochs": 0})
    train_cli(config, tmp_path / "run")
    assert seen_text and set(seen_text) == {5}
    assert max(seen_labels) <= 4 and min(seen_labels) >= -1
    heads = torch.load(tmp_path / "run" / "last.pt", map_location="cpu",
                       weights_only=False)["heads"]
    arcface = [v for k, v in heads.items() if k.startswith("arcface.")]
    assert arcface and all(5 * 3 in v.shape for v in arcface)  # 5 classes x 3 sub-centres

    pack = loop.TrainingPack.load(packs["train"])
    seen, remap = loop._seen_classes(pack, ("normal",))
    assert [pack.classes[i] for i in seen] == [c for c in pack.classes if c != "normal"]
    assert remap[pack.classes.index("normal")] == -1 and remap[-1] == -1


def test_withholding_an_unknown_class_fails_cleanly(packs: dict[str, Path],
                                                    tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.yaml", packs, data={"withhold": ["normall"]})
    result = runner.invoke(app, ["train", "--config", str(config), "--out",
                                 str(tmp_path / "run")])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)  # a clean error, not a traceback
    assert "normall" in result.output


def test_evaluate_run_on_a_test_pack(run: dict[str, Any], packs: dict[str, Path]) -> None:
    metrics = evaluate_run(run["out"], packs["test"])
    assert metrics["n_test_tiles"] > 0
    for key in ("retrieval_mMV@5", "zeroshot_balanced_accuracy", "text2image_P@10"):
        assert math.isfinite(float(metrics[key])), key
        assert 0.0 <= float(metrics[key]) <= 1.0, key


@pytest.mark.parametrize(("section", "key"), [("train", "epochz"), ("data", "packs"),
                                              ("losses", "arcfac"), (None, "losess")])
def test_load_config_rejects_unknown_keys(packs: dict[str, Path], tmp_path: Path,
                                          section: str | None, key: str) -> None:
    config = write_config(tmp_path / "c.yaml", packs)
    raw = yaml.safe_load(config.read_text())
    (raw[section] if section else raw)[key] = 1
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match=key):
        load_config(config)


def test_load_config_reads_the_smoke_config(run: dict[str, Any]) -> None:
    config = load_config(run["config"], epochs=3)
    assert config.train.epochs == 3 and config.train.ssl_epochs == 1
    assert config.data.withhold == ()
    assert config.losses.arcface == 1.0 and config.ssl_losses.simclr == 1.0


def test_ema_weights_are_validated_exported_and_resumed(packs: dict[str, Path],
                                                        tmp_path: Path) -> None:
    from safetensors.torch import load_file

    config = write_config(tmp_path / "ema.yaml", packs, train={"ema_decay": 0.5})
    out = tmp_path / "run"
    train_cli(config, out)
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    steps = int(ckpt["ema"]["n_averaged"])  # one update per optimiser step
    assert steps >= 2 and steps % 2 == 0  # 2 epochs of equal length
    exported = load_file(out / "last.safetensors")
    key = next(k for k in exported if k.endswith("proj.weight"))
    average = ckpt["ema"][f"module.{key}"].half()
    raw = ckpt["model"][key].half()
    assert torch.equal(exported[key], average) and not torch.equal(exported[key], raw)
    longer = train_cli(config, out, "--epochs", "2")  # resume restores the average, goes on
    assert "resuming" in longer.output
    assert int(torch.load(out / "last.pt", map_location="cpu",
                          weights_only=False)["ema"]["n_averaged"]) == steps // 2 * 3


@pytest.mark.parametrize("key", ["ema_decay", "knowledge_margin"])
def test_train_fraction_out_of_range_is_refused(packs: dict[str, Path], tmp_path: Path,
                                                key: str) -> None:
    config = write_config(tmp_path / "bad.yaml", packs, train={key: 1.0})
    result = runner.invoke(app, ["train", "--config", str(config), "--out",
                                 str(tmp_path / "run")])
    assert result.exit_code != 0 and key in result.output


def test_knowledge_margin_reaches_the_loss(packs: dict[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from histoseek.training import loop

    made: list[float] = []
    real = loop.KnowledgeAlignment

    def spy(*args: object, **kwargs: float) -> object:
        made.append(kwargs.get("margin", 0.0))
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "KnowledgeAlignment", spy)
    config = write_config(tmp_path / "margin.yaml", packs, train={"knowledge_margin": 0.25})
    result = runner.invoke(app, ["train", "--config", str(config), "--out",
                                 str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert made == [0.25]


# --- v2: frozen trunk, training on cached frozen maps ------------------------------------
@pytest.fixture(scope="module")
def v2_run(packs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("v2")
    config = write_config(root / "v2.yaml", packs, model="histoseek-base",
                          train={"ssl_epochs": 0, "epochs": 2, "feature_cache_views": 2,
                                 "backbone_lr_scale": 0.1, "l2sp_weight": 0.01})
    result = train_cli(config, root / "run")
    return {"out": root / "run", "config": config, "output": result.output}


def test_v2_trains_on_cached_frozen_maps(v2_run: dict[str, Any]) -> None:
    out: Path = v2_run["out"]
    cache = out / "feature_cache-2views.pt"
    assert cache.is_file()
    rows = metric_rows(out)
    assert [r["stage"] for r in rows] == ["supervised", "supervised"]
    for row in rows:
        assert math.isfinite(float(row["loss"])) and float(row["l2sp"]) >= 0.0
    assert float(rows[1]["l2sp"]) > 0.0  # the tuned blocks moved away from ImageNet
    with torch.inference_mode():
        trained = create_model("histoseek-base", pretrained=out / "best.safetensors")
        start = create_model("histoseek-base")
        for name in ("stem.0.weight", "blocks.5.0.conv_pw.weight"):  # frozen: unchanged
            assert torch.allclose(trained.image.get_parameter(name),
                                  start.image.get_parameter(name), atol=1e-3), name
        tuned = "tuned_blocks.5.0.conv_pw.weight"  # keys keep the block index
        assert not torch.allclose(trained.image.get_parameter(tuned),
                                  start.image.get_parameter(tuned), atol=1e-4)


def test_v2_resume_reuses_the_feature_cache(v2_run: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(v2_run["out"], out)
    stamp = (out / "feature_cache-2views.pt").stat().st_mtime_ns
    longer = train_cli(v2_run["config"], out, "--epochs", "3")
    assert "resuming" in longer.output and "epoch 3/3" in longer.output
    assert (out / "feature_cache-2views.pt").stat().st_mtime_ns == stamp


def test_feature_cache_needs_a_frozen_trunk(packs: dict[str, Path], tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.yaml", packs, train={"feature_cache_views": 2})
    result = runner.invoke(app, ["train", "--config", str(config), "--out",
                                 str(tmp_path / "run")])
    assert result.exit_code != 0 and "frozen trunk" in result.output


@pytest.mark.parametrize(("key", "value"), [("feature_cache_views", 1),
                                            ("backbone_lr_scale", -1.0),
                                            ("l2sp_weight", -0.5)])
def test_v2_options_out_of_range_are_refused(packs: dict[str, Path], tmp_path: Path,
                                             key: str, value: float) -> None:
    config = write_config(tmp_path / "bad.yaml", packs, train={key: value})
    with pytest.raises(InputError, match=key):
        load_config(config)
