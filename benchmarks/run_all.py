"""Regenerate docs/results.md: retrieval quality of every offline encoder on the shared data,
then the engine benchmarks (search latency, ingest throughput), printed and written.

    python benchmarks/run_all.py            # full run (needs ../shared/data)
    python benchmarks/run_all.py --quick    # smaller benchmark sizes
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FIGURES = ROOT / "docs" / "figures"
OFFLINE_IMAGE_ENCODERS = ["imagenet-lite0", "imagenet-lite2", "classic", "resnet18-random"]


def run(cmd: list[str]) -> str:
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    sys.stderr.write(done.stderr[-2000:])
    print(done.stdout, flush=True)
    return done.stdout


def retrieval_section(workdir: Path) -> list[str]:
    from histoseek.evaluation.report import markdown_table

    data = SHARED / "ebhi-seg" / "labels.csv"
    if not data.is_file():
        return ["## Retrieval", "", "../shared/data/ebhi-seg is absent: not run.", ""]
    lines = ["## Baselines: image retrieval on all of EBHI-Seg (2,228 tiles, 6 classes, 354 cases)",
             "", "The offline encoders that need no training here; the built-in model is scored "
             "on the held-out test split only (next section), since it trained on the rest.", ""]
    for protocol, extra in (("leave-one-case-out", ["--exclude-same", "source_id"]),
                            ("no exclusion (leaky: same-case neighbours allowed)", [])):
        out = workdir / ("eval-loso" if extra else "eval-leaky")
        cmd = [sys.executable, "-m", "histoseek.cli", "eval", "retrieval", "--data", str(data),
               "--out", str(out), "--k", "1,5,10", "--cache", str(workdir / "cache"), *extra]
        for enc in OFFLINE_IMAGE_ENCODERS:
            cmd += ["--encoder", enc]
        t0 = time.perf_counter()
        run(cmd)
        seconds = time.perf_counter() - t0
        results = json.loads((out / "metrics.json").read_text())
        n = next(iter(results.values()))["n_queries"]
        lines += [f"### {protocol} (n_queries = {n}; {seconds:.0f} s incl. encoding/cache)", "",
                  markdown_table(results)]
        if extra:
            FIGURES.mkdir(parents=True, exist_ok=True)
            for png in out.glob("*.png"):
                shutil.copyfile(png, FIGURES / f"ebhi_{png.name}")
            lines += ["Figures: " + ", ".join(
                f"[{p.name}](figures/ebhi_{p.name})" for p in sorted(out.glob("*.png"))), ""]
    lines += ["R@K is the top-K hit rate, P@K precision, mMV@K the top-K majority vote, mAP@K "
              "average precision normalised by min(K, relevant eligible items), MRR the mean "
              "reciprocal rank of the first same-class hit.", ""]
    return lines


def _eval(cmd_tail: list[str], out: Path) -> dict:
    run([sys.executable, "-m", "histoseek.cli", "eval", *cmd_tail, "--out", str(out),
         "--cache", str(out.parent / "cache")])
    return json.loads((out / "metrics.json").read_text())


def builtin_model_section(workdir: Path) -> list[str]:
    """Issue 5's figures: the shipped model on the held-out test cases, with the harness."""
    from histoseek.evaluation.bootstrap import format_interval
    from histoseek.evaluation.report import markdown_table

    data = SHARED / "ebhi-seg" / "labels.csv"
    if not data.is_file():
        return ["## Built-in model", "", "../shared/data is absent: not run.", ""]
    split = ROOT / "configs" / "splits" / "ebhi-seg-seed0.json"
    test = ["--split", str(split), "--subset", "test"]
    lines = ["## histoseek-base on the EBHI-Seg test split (118 held-out cases, 743 tiles)", "",
             "Split by case (`configs/splits/ebhi-seg-seed0.json`, seed 0); the model never saw "
             "these cases. Retrieval is leave-one-case-out within the test split.", ""]
    t0 = time.perf_counter()
    ret = _eval(["retrieval", "--data", str(data), "--exclude-same", "source_id", "--k", "1,5,10",
                 *test, "--encoder", "histoseek-base", "--encoder", "imagenet-lite0",
                 "--encoder", "classic", "--encoder", "resnet18-random"],
                workdir / "base-retrieval")
    gain = ret["histoseek-base"]["mMV@5"] - ret["classic"]["mMV@5"]
    floor = ret["histoseek-base"]["mMV@5"] - ret["imagenet-lite0"]["mMV@5"]
    lines += [f"### Patch retrieval ({time.perf_counter() - t0:.0f} s)", "", markdown_table(ret),
              f"mMV@5: {ret['histoseek-base']['mMV@5']:.3f} (target 0.88: "
              f"{'met' if ret['histoseek-base']['mMV@5'] >= 0.88 else '**not met**'}); "
              f"**{100 * floor:+.1f} points** over the frozen `imagenet-lite0` it starts from, "
              f"**{100 * gain:+.1f}** over `classic`. "
              "95% intervals from a bootstrap over the test cases (2,000 resamples of whole "
              "cases, neighbours as ranked): " + "; ".join(
                  f"{name} mMV@5 {format_interval(r['ci95']['mMV@5'])}" for name, r in ret.items()
                  if "ci95" in r) + ".", ""]
    zs = _eval(["zeroshot", "--data", str(data), "--classes",
                str(ROOT / "configs" / "zeroshot" / "ebhi-seg.yaml"), "--encoder",
                "histoseek-base", *test], workdir / "base-zeroshot")
    z = zs["histoseek-base"]
    lines += ["### Zero-shot classification and text → image (knowledge-base prompts only)", "",
              "| encoder | accuracy | balanced accuracy | 95% interval (by case) | weighted F1 | "
              "text→image P@10 | text→image R@10 | n |", "|---|---:|---:|---:|---:|---:|---:|---:|",
              f"| histoseek-base | {z['accuracy']:.3f} | {z['balanced_accuracy']:.3f} | "
              f"{format_interval(z['ci95']['balanced_accuracy'])} | "
              f"{z['weighted_f1']:.3f} | {z['t2i_P@10']:.3f} | {z['t2i_R@10']:.3f} | "
              f"{z['n_queries']} |", "",
              "The interval resamples whole test cases (2,000 times): the test split has 6 "
              "normal and 4 serrated-adenoma cases, so one case changes a class recall by "
              "17-25 points and the balanced accuracy by 3-4.", "",
              "Targets: balanced accuracy 0.75 (chance 0.17): "
              f"{'met' if z['balanced_accuracy'] >= 0.75 else '**not met**'}; text→image P@10 "
              f"0.75: {'met' if z['t2i_P@10'] >= 0.75 else '**not met**'}. Prompts: "
              "`configs/zeroshot/ebhi-seg.yaml`, generated from the knowledge tree. "
              "Text→image: each class's prompts (mean embedding) as one query over the test "
              "tiles; P@10 precision, R@10 the top-10 hit rate.", ""]
    for png in (workdir / "base-zeroshot").glob("confusion_*.png"):
        shutil.copyfile(png, FIGURES / "zeroshot_confusion_histoseek-base.png")
    for png in (workdir / "base-retrieval").glob("*.png"):
        shutil.copyfile(png, FIGURES / f"test_{png.name}")
    lines += ["Figures: [zero-shot confusion](figures/zeroshot_confusion_histoseek-base.png), "
              "[retrieval confusion](figures/test_confusion_histoseek-base.png), "
              "[worst queries](figures/test_worst_histoseek-base.png), "
              "[per class](figures/test_per_class.png).", ""]
    lines += v2_section(ROOT / "docs" / "training")
    out = run([sys.executable, str(ROOT / "benchmarks" / "cross_domain.py"), "--out",
               str(FIGURES)])
    lines += ["### Cross-domain: the real slides in tiny-wsi", "",
              "TCGA-CR-7395 is head & neck SCC (HNSC); the model has only seen colorectal "
              "biopsies. Zero-shot over all 55 knowledge-tree entities, on the slide's tiles:", "",
              "```", out.strip(), "```", "",
              "![cross-domain retrieval grid](figures/cross_domain_grid.png)", ""]
    out, load = _timed_on_cpu([sys.executable, str(ROOT / "benchmarks" / "bench_encoders.py")])
    lines += ["### Encoding speed on CPU (224 px, batch 64)", "", "```", out.strip(), "```", "",
              load, "",
              f"Loss curve of the shipped model: [v2](training/{SHIPPED_RUN}.loss_curve.png).",
              ""]
    out, load = _timed_on_cpu([sys.executable,
                               str(ROOT / "benchmarks" / "bench_train_step.py")])
    lines += ["### Training step on CPU (median of 4)", "", "```",
              out.strip(), "```", "", load, ""]
    return lines


def _timed_on_cpu(cmd: list[str]) -> tuple[str, str]:
    """Run a CPU timing and say how busy the machine was: other jobs on the same cores slow
    every row alike, so the ratios between rows hold better than the absolute figures."""
    import os

    before = os.getloadavg()[0]
    out = run(cmd)
    after = os.getloadavg()[0]
    return out, (f"Load average (1 min) on the {os.cpu_count()} cores: {before:.1f} before, "
                 f"{after:.1f} after this timing; above the core count, other jobs shared the "
                 "cores and the absolute figures are low (compare rows within the run).")


V2_RUNS = {
    "v2-lite0": "v2-lite0 (lite0: blocks 0-4 frozen, 5-6 tuned (0.1x lr), 12 epochs)",
    "v2-deep": "v2-deep (lite0: blocks 0-3 frozen, 4-6 tuned (0.1x lr), 20 epochs; shipped "
               "before v2-l2sp)",
    "v2-lr1": "v2-lr1 (lite0: as v2-lite0, tuned blocks at the full lr)",
    "v2-l2sp": "v2-l2sp (lite0: as v2-lr1 + L2-SP (0.1) toward ImageNet)",
    "v2-lite2": "v2-lite2 (lite2: blocks 0-4 frozen, 5-6 tuned (0.1x lr), 12 epochs)",
}
SHIPPED_RUN = "v2-l2sp"  # the best validation score of V2_RUNS (v2_section checks it)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def v2_section(records: Path) -> list[str]:
    """Issue 10's ablation: each run's harness figures beside its generalisation proxies."""
    from histoseek.evaluation.bootstrap import format_interval

    lines = ["### v2 ablation: how the general features are kept", "",
             "Every run: EBHI training split only, selected by validation score (held-out "
             "training cases), trained on 2 CPU cores on cached frozen maps (4 augmented views "
             "per tile, `train.feature_cache_views`), then scored on the test split by "
             "`scripts/eval_run.py` (harness) and `benchmarks/generalisation.py` (proxies). "
             "`g` is the general branch's weight in the library vector, as each run was scored "
             "(shipped: 0.9, chosen on validation by `scripts/select_general_weight.py`, below); "
             "`g = 0` is the fine-tuned branch alone, i.e. fine-tuning without a frozen branch "
             "beside it. OOD overlap: the share of each out-of-domain tile's 10 nearest "
             "neighbours under frozen `imagenet-lite0` that the model keeps (tiles of the two "
             "tiny-wsi slides; zoomed-in random crops of test tiles). Train time: the epochs' "
             "seconds summed from the run's `metrics.csv` (in brackets the wall clock from start "
             "to finish, which also holds building the cache of frozen maps where it was not "
             "shared, and the pauses of runs resumed in a later session; the 2 cores were "
             "shared with other jobs, so times are indicative).", "",
             "| run | val score | g | test mMV@5 (95% CI) | zero-shot bal. acc (95% CI) | "
             "text→image P@10 | OOD overlap, slides | OOD overlap, crops | train time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    val_scores = {}
    ref = v1 = None
    for key, title in V2_RUNS.items():
        harness, gen = records / f"{key}.harness.json", records / f"{key}.generalisation.json"
        if not (harness.is_file() and gen.is_file()):
            continue
        h, g = json.loads(harness.read_text()), json.loads(gen.read_text())
        results = g["results"]
        ref = ref or results[g["reference"]]
        v1 = v1 or next((v for k, v in results.items() if k.startswith("histoseek-base-v1@")),
                        None)
        val_scores[key] = (h["selection"]["val_score"], h["retrieval"]["mMV@5"],
                           h["zeroshot"]["balanced_accuracy"])
        minutes = h["selection"]["train_seconds_summed"] / 60
        wall = f" ({h['wall_seconds'] / 60:.0f})" if "wall_seconds" in h else ""
        model = next(k for k in results if k != g["reference"] and "[g=" not in k)
        r = results[model]
        title = f"**{title} (shipped)**" if key == SHIPPED_RUN else title
        lines.append(
            f"| {title} | {h['selection']['val_score']:.3f} (epoch "
            f"{h['selection']['best_epoch']}) | {r.get('general_weight', 0.5)} | "
            f"{h['retrieval']['mMV@5']:.3f} "
            f"{format_interval(h['retrieval']['ci95']['mMV@5'])} | "
            f"{h['zeroshot']['balanced_accuracy']:.3f} "
            f"{format_interval(h['zeroshot']['ci95']['balanced_accuracy'])} | "
            f"{h['zeroshot']['t2i_P@10']:.3f} | {_fmt(r['ood_overlap@10_slides'])} | "
            f"{_fmt(r['ood_overlap@10_crops'])} | {minutes:.0f} min{wall} |")
        for variant, rv in results.items():
            if variant.startswith(model + " [g="):
                weight = variant.split("[g=")[1].rstrip("]")
                lines.append(f"| ↳ same weights re-mixed | – | {weight} | "
                             f"{rv['test_mMV@5']:.3f} | (same) | (same) | "
                             f"{_fmt(rv['ood_overlap@10_slides'])} | "
                             f"{_fmt(rv['ood_overlap@10_crops'])} | – |")
    if v1 is not None:
        v1h = json.loads((records / "gpu-shipped.harness.json").read_text())
        lines.append(f"| v1: ResNet-10t from scratch (no pretrained weights) | "
                     f"{v1h['selection']['val_score']:.3f} | – | {v1['test_mMV@5']:.3f} | "
                     f"{v1h['zeroshot']['balanced_accuracy']:.3f} | "
                     f"{v1h['zeroshot']['t2i_P@10']:.3f} | "
                     f"{_fmt(v1['ood_overlap@10_slides'])} | {_fmt(v1['ood_overlap@10_crops'])} "
                     f"| 7 min (H100) |")
    if ref is not None:
        lines.append(f"| frozen `imagenet-lite0` (the start) | – | 1 | {ref['test_mMV@5']:.3f} | "
                     f"– | – | 1 | 1 | – |")
    lines += ["", "Zero-shot and text→image rank by the tuned branch alone (text vectors are "
              "zero on the general part), so `g` does not change them.", ""]
    lines += _v2_choice(records, val_scores)
    withheld = records / "v2-withheld.generalisation.json"
    if withheld.is_file():
        w = json.loads(withheld.read_text())
        ref_w = w["results"][w["reference"]]
        model = next(k for k in w["results"] if k != w["reference"] and "[g=" not in k)
        mw = w["results"][model]
        per = lambda r: ", ".join(f"{c} {v:.3f}" for c, v in  # noqa: E731
                                  r["withheld_per_class_mMV@5"].items())
        import csv

        with open(records / "v2-withheld.metrics.csv", newline="") as fh:
            epochs = len(list(csv.DictReader(fh)))
        lines += ["### Withheld classes: retrieval of classes the model never saw", "",
                  "The v2-deep recipe (the model shipped before v2-l2sp: blocks 4-6 tuned) "
                  "trained again with `normal` and `serrated_adenoma` neither "
                  "labelled nor described (`configs/v2/withheld.yaml`; "
                  f"{epochs} of its 20 epochs run, best of those by validation); mMV@5 over "
                  "those classes' test queries (leave-one-case-out, gallery: all test tiles):",
                  "",
                  "| encoder | withheld-class mMV@5 | per class |", "|---|---:|---|",
                  f"| v2 trained without them | {mw['withheld_mMV@5']:.3f} | {per(mw)} |"]
        for variant, rv in w["results"].items():
            if variant.startswith(model + " [g="):
                lines.append(f"| ↳ re-mixed {variant.split('[')[1].rstrip(']')} | "
                             f"{rv['withheld_mMV@5']:.3f} | {per(rv)} |")
        lines += [f"| frozen `imagenet-lite0` | {ref_w['withheld_mMV@5']:.3f} | {per(ref_w)} |",
                  ""]
        shipped = records / f"{SHIPPED_RUN}.generalisation.json"
        if shipped.is_file():
            sg = json.loads(shipped.read_text())
            sm = next(v for k, v in sg["results"].items()
                      if k != sg["reference"] and "[g=" not in k)
            lines += [f"The shipped model ({SHIPPED_RUN}) saw both classes in training, so its "
                      f"figure on them is no withheld-class test: {sm['withheld_mMV@5']:.3f} "
                      f"({per(sm)}).", ""]
    return lines


def _v2_choice(records: Path, scores: dict[str, tuple[float, float, float]]) -> list[str]:
    """How the shipped run and its g were chosen: validation only, with the figures.

    ``scores``: run -> (validation score, test mMV@5, test zero-shot balanced accuracy).
    """
    if not scores:
        return []
    ranked = sorted(scores, key=lambda k: -scores[k][0])
    if ranked[0] != SHIPPED_RUN:
        raise SystemExit(f"run_all: SHIPPED_RUN {SHIPPED_RUN} is not the best validation score "
                         f"({ranked[0]} {scores[ranked[0]][0]:.3f}); ship by validation")
    on_test = []
    for i, what in ((1, "test mMV@5"), (2, "test zero-shot balanced accuracy")):
        best = max(scores, key=lambda k: scores[k][i])
        on_test.append(f"{what}: best {best} {scores[best][i]:.3f}, shipped "
                       f"{scores[SHIPPED_RUN][i]:.3f}")
    lines = ["**Which run ships, and why.** The shipped model is the run with the best "
             "validation score (mean of validation mMV@5 and validation zero-shot balanced "
             "accuracy, on held-out *training* cases): " + ", ".join(
                 f"{k} {scores[k][0]:.3f}" for k in ranked) + ". The test columns chose "
             "nothing; for the record (" + "; ".join(on_test) + ")."]
    selection = records / f"{SHIPPED_RUN}.g-selection.json"
    if selection.is_file():
        sel = json.loads(selection.read_text())
        lines[-1] += (f" Its general weight g = {sel['chosen_g']} was then chosen on the same "
                      f"validation tiles by `scripts/select_general_weight.py` (rule, fixed "
                      f"beforehand: {sel['rule']}): validation mMV@5 by g " + ", ".join(
                          f"{r['g']}: {r['val_mMV@5']:.3f}" for r in sel["rows"]) + " (the "
                      "best epoch was picked on these same tiles with the g then in the model "
                      "config, which flatters that g; the differences are 1-5 of 210 queries).")
    return [*lines, ""]


def training_records_section() -> list[str]:
    """Ablation, variants and the withheld-classes stress test, from the recorded GPU runs."""
    records = ROOT / "docs" / "training"
    lines = ["### v1 ablation (each row adds one part; same split, seed, schedule)", "",
             "Trained on one H100 (`scripts/device_train.sh`), 4 self-supervised + 26 supervised "
             "epochs, no class balancing; scored by `histoseek.training.evaluate_pack` on the "
             "test split packed as JPEG q72 (the GPU box has no ../shared), with the harness's "
             "metric functions. Row E scored on the original test JPEGs by the harness: see "
             "`harness_eval_of_gpu_runs.json`.", "",
             "| row | model | mMV@5 | P@5 | mAP@5 | R@1 | zero-shot bal. acc | text→image P@10 |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    names = {"a-backbone-gem": "backbone + GeM (self-supervised + HLSS only)",
             "b-neck": "+ local-global neck", "c-arcface": "+ sub-center ArcFace",
             "d-knowledge": "+ knowledge alignment (KEP)",
             "e-full": "+ text losses (FGCR instance + region)"}
    for key, title in names.items():
        path = records / f"{key}.eval.json"
        if not path.is_file():
            continue
        d = json.loads(path.read_text())
        lines.append(f"| {key[0].upper()} | {title} | {d['retrieval_mMV@5']:.3f} | "
                     f"{d['retrieval_P@5']:.3f} | {d['retrieval_mAP@5']:.3f} | "
                     f"{d['retrieval_R@1']:.3f} | {d['zeroshot_balanced_accuracy']:.3f} | "
                     f"{d['text2image_P@10']:.3f} |")
    harness = json.loads((records / "harness_eval_of_gpu_runs.json").read_text())
    lines += ["", "### Variants of E, and the choice of the shipped weights", "",
              "Chosen by validation score (mean of val mMV@5 and val zero-shot balanced accuracy "
              "on held-out *training* cases); test figures (harness, original JPEGs) for all:", "",
              "| variant | best epoch | val score | test mMV@5 | test zero-shot bal. acc | "
              "test text→image P@10 |", "|---|---:|---:|---:|---:|---:|"]
    for key in ("balanced", "balanced-knowledge2", "balanced-long"):
        v = harness[key]
        lines.append(f"| {key}{' (shipped)' if key == 'balanced-long' else ''} | "
                     f"{v['selection']['best_epoch']} | {v['selection']['val_score']:.3f} | "
                     f"{v['retrieval']['mMV@5']:.3f} | {v['zeroshot']['balanced_accuracy']:.3f} |"
                     f" {v['zeroshot']['t2i_P@10']:.3f} |")
    e = harness["e-full"]["selection"]
    ef = harness["e-full"]
    header = ("| variant | best epoch | val score | test mMV@5 | test zero-shot bal. acc | "
              "test text→image P@10 |")
    lines.insert(lines.index(header) + 2,
                 f"| e-full (ablation E: no balancing, 26 epochs) | {e['best_epoch']} | "
                 f"{e['val_score']:.3f} | {ef['retrieval']['mMV@5']:.3f} | "
                 f"{ef['zeroshot']['balanced_accuracy']:.3f} | {ef['zeroshot']['t2i_P@10']:.3f} |")
    lines += [""]
    lines += cpu_reproduction_section(records)
    w = harness["withheld"]
    acc = w["withheld_class_zero_shot_accuracy"]
    lines += ["### Stress test: two classes' labels and knowledge withheld in training", "",
              "Same as E but `normal` and `serrated_adenoma` were never labelled nor described to "
              "the model (`configs/v1/ablation/withheld.yaml`). Zero-shot on the test split "
              f"(harness): overall balanced accuracy {w['zeroshot']['balanced_accuracy']:.3f}; "
              f"on the withheld classes: normal **{acc['normal']:.3f}**, serrated adenoma "
              f"**{acc['serrated_adenoma']:.3f}**. They were predicted as: "
              + "; ".join(f"{c}: " + ", ".join(f"{n} {k}" for n, k in v)
                          for c, v in w["withheld_class_predicted_as"].items()) + ".", "",
              "Loss curves: [v1 shipped model](training/histoseek-base.loss_curve.png), "
              "[E](training/e-full.loss_curve.png), [CPU run](training/cpu-base.loss_curve.png); "
              "per-epoch metrics in `docs/training/*.csv`.",
              ""]
    return lines


def cpu_reproduction_section(records: Path) -> list[str]:
    """The shipped config trained again on this 2-core CPU, beside the GPU run it reproduces."""
    from histoseek.evaluation.bootstrap import format_interval

    runs = {"gpu-shipped": "GPU run (H100, fp32)", "cpu-base": "CPU run (2 cores, bf16 trunk)",
            "short": "CPU run, `configs/v1/variants/short.yaml` (16 supervised epochs)",
            "short-ema": "CPU run, `configs/v1/variants/short-ema.yaml` (short + weight EMA "
                         "0.99)",
            "short-margin": "CPU run, `configs/v1/variants/short-margin.yaml` (short + knowledge "
                            "margin 0.2)",
            "short-knowledge2": "CPU run, `configs/v1/variants/short-knowledge2.yaml` (short + "
                                "knowledge weight 2)"}
    found = {k: json.loads((records / f"{k}.harness.json").read_text())
             for k in runs if (records / f"{k}.harness.json").is_file()}
    if "cpu-base" not in found:
        return []
    cpu = found["cpu-base"]
    hours = cpu.get("wall_seconds", cpu["selection"]["train_seconds_summed"]) / 3600
    lines = ["### v1's config on 2 CPU cores", "",
             "`histoseek train --config configs/v1/histoseek-base-v1.yaml --out runs/cpu-base` on "
             "this "
             f"project's machine (2 cores, no GPU): **{hours:.2f} h** wall-clock for all "
             f"{cpu['selection']['epochs_run']} epochs, validation and checkpoints included "
             "(packing the data first takes about 15 s; target: 3 h). `train.precision: auto` "
             "runs the backbone and neck in bf16 on a CPU with native bf16 and keeps pooling, "
             "heads and losses in fp32 "
             "(`python benchmarks/bench_train_step.py` times the step). Every row is scored by "
             "`scripts/eval_run.py` (the harness, original test JPEGs); the weights of each run "
             "are its best epoch by validation score.", "",
             "| run | best epoch | val score | test mMV@5 | test R@1 | test zero-shot bal. acc | "
             "its 95% interval (by case) | test text→image P@10 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, title in runs.items():
        if key in found:
            r = found[key]
            zs_interval = (format_interval(r["zeroshot"]["ci95"]["balanced_accuracy"])
                           if "ci95" in r["zeroshot"] else "–")
            lines.append(f"| {title} | {r['selection']['best_epoch']} | "
                         f"{r['selection']['val_score']:.3f} | {r['retrieval']['mMV@5']:.3f} | "
                         f"{r['retrieval']['R@1']:.3f} | "
                         f"{r['zeroshot']['balanced_accuracy']:.3f} | "
                         f"{zs_interval} | "
                         f"{r['zeroshot']['t2i_P@10']:.3f} |")
    return [*lines, ""]


def bench_section(quick: bool) -> list[str]:
    sizes = ["20000", "100000"] if quick else ["100000", "1000000"]
    lines = ["## Engine benchmarks", ""]
    out = run([sys.executable, str(ROOT / "benchmarks" / "bench_search.py"), "--sizes", *sizes])
    lines += ["### Search latency: `Library.search` vs raw FAISS (flat, d=512, k=10, one query at "
              "a time)", "", "```", out.strip(), "```", ""]
    out = run([sys.executable, str(ROOT / "benchmarks" / "bench_search.py"), "--sizes", sizes[0],
               "--index", "hnsw"])
    lines += ["HNSW (M=32, efSearch=128), against a raw FAISS HNSW built alike:", "", "```",
              out.strip(), "```", ""]
    out = run([sys.executable, str(ROOT / "benchmarks" / "bench_ingest.py"), "--tiles",
               "256" if quick else "512"])
    lines += ["### Ingest throughput vs the bare encoder forward pass (batch 64)", "", "```",
              out.strip(), "```", ""]
    return lines


def _type_rows(modes: dict, split: str | None, types: tuple[str, ...],
               metrics: tuple[str, ...]) -> list[str]:
    head = [f"{t} {m}" for t in types for m in metrics]
    lines = ["| mode | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for mode, result in modes.items():
        by_type = result[split] if split else result
        cells = [f"{by_type[t][m]:.3f}" if t in by_type else "-" for t in types for m in metrics]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def engine_section() -> list[str]:
    """Records of the engine's second pass: text-search expansion, user mistakes, search
    latency (written by their scripts; re-run those to refresh)."""
    docs = ROOT / "docs"
    lines = ["## Engine: text search, user mistakes, search overhead", ""]
    record = docs / "text-expansion.json"
    if record.is_file():
        data = json.loads(record.read_text())
        rep, tiles = data["reports"], data.get("tiles")
        lines += ["### Text search: query expansion (`python benchmarks/bench_text_expansion.py`)",
                  "",
                  f"Report queries → relevant reports: {rep['n_queries']} labelled queries over "
                  f"{rep['n_reports']} reports (`tests/data/text_queries`), text encoder "
                  f"{rep['encoder']}. `fused` (shipped: {rep['shipped']['design']}, weight "
                  f"{rep['shipped']['weight']}) embeds the knowledge-base expansion apart and adds "
                  "it to the literal query; `concat` was the old default (expansion appended to "
                  "the query text); `spelled out` only spells out abbreviations. The design "
                  "and weight were chosen on the dev half; a query naming a subtype "
                  "(\"hamartomatous polyp\") is not expanded with its broader entity.", ""]
        types = ("exact", "synonym", "abbreviation", "all")
        for split in ("all", "dev", "test"):
            lines += [f"{split} queries:", ""]
            lines += _type_rows(rep["modes"], split, types, ("nDCG@10", "R@1"))
        if tiles:
            n_prompts = sum(map(len, tiles["prompts"].values()))
            lines += [f"Text → tiles on the EBHI-Seg test split ({tiles['n_tiles']} tiles, "
                      f"{n_prompts} class prompts, {tiles['encoder']} text tower): "
                      "P@10 and nDCG@10 by prompt type. The tile weight is chosen apart, on "
                      "the dev half of the prompts by the same rule: every weight above 0 "
                      "cost the name prompts, so text → tiles ships spelled out only (w = "
                      f"{tiles.get('shipped_weight', 0.0)}, dev pick "
                      f"{tiles.get('dev_pick', '-')}).", ""]
            lines += _type_rows(tiles["modes"], None, ("name", "synonym", "abbreviation", "all"),
                                ("P@10", "nDCG@10"))
    mistakes = docs / "user-mistakes.md"
    if mistakes.is_file():
        lines += ["### User mistakes, before and after the second pass "
                  "(`python scripts/user_mistakes.py --before OLD/src`)", "",
                  mistakes.read_text().strip(), ""]
    latency = docs / "cli-latency.md"
    if latency.is_file():
        lines += ["### CLI search latency (`python benchmarks/bench_cli_latency.py`)", "",
                  latency.read_text().strip(), ""]
    for name, title in (("bench-search-hnsw.json", "HNSW at 100k, 512-d"),
                        ("bench-search-hnsw-728.json",
                         "HNSW at 100k, 728-d (histoseek-base's dimension)"),
                        ("bench-search-flat.json", "flat at 1M")):
        path = docs / name
        if path.is_file():
            runs = json.loads(path.read_text())
            lines += [f"### Search overhead, {title}: `Library.search` vs raw FAISS "
                      f"(`bench_search.py --repeats 3`)", "",
                      "| run | library ms (median) | raw FAISS ms | ratio | minimal wrapper "
                      "ratio | recall@10 vs exact |", "|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {r['run']} | {r['library_ms_median']:.2f} | "
                      f"{r['raw_faiss_ms_median']:.2f} | {r['ratio_median']:.3f} | "
                      f"{r.get('floor_ratio_median', float('nan')):.3f} | "
                      f"{r['library_recall_at_k_vs_exact']:.3f} |" for r in runs]
            lines += [""]
    lines += ["Raw FAISS is the library's own index searched directly (same graph and memory). "
              "The minimal wrapper adds only what any library returning typed hits must: a "
              "freshness check (one SQLite PRAGMA), a normalised copy of the query and one hit "
              "per result. On this shared 2-core VM a 0.45 ms HNSW search leaves the caches "
              "cold, so every Python step after it costs 2-3x its warm time (post-processing "
              "23 us warm, 57 us right after a search); the wrapper alone is 1.14-1.16x, and "
              "`Library.search` (validation, filters, source fields, hit records) 1.30-1.42x, "
              "short of the 1.2x target. Flat at 1M stays at about 1.0x.", ""]
    return lines


def slide_section() -> list[str]:
    """Slide-level search, from the JSON its own benchmarks write (they take minutes and
    build their own libraries): ``synthetic_slide_eval.py`` and ``slide_scaling.py``."""
    lines = ["## Whole slides and regions", ""]
    evaluation = ROOT / "docs" / "slide-eval.json"
    if evaluation.is_file():
        e = json.loads(evaluation.read_text())
        loc, ret, binary, zs = (e["localisation"], e["slide_retrieval"],
                                e["slide_retrieval_binary"], e["zero_shot"])
        lines += [f"### Synthetic slides from test-split sources (`benchmarks/"
                  f"synthetic_slide_eval.py`): {e['slides']} slides, {e['tiles']:,} tiles, "
                  f"{e['encoder']}", "",
                  "Leave-one-source-out throughout; class regions of EBHI tiles on a "
                  "tissue-like canvas (`evaluation/synthetic_slides.py`).", "",
                  "| measure | value | queries |", "|---|---:|---:|",
                  f"| region localisation: top box IoU ≥ 0.5 with a box of the query's class "
                  f"| {loc['hit_rate']:.3f} (mean IoU {loc['mean_iou']:.3f}) | "
                  f"{loc['queries']} |",
                  f"| slide retrieval mMV@5 by dominant class (two-stage, float) | "
                  f"{ret['mMV@5']:.3f} (top-1 {ret['top1_accuracy']:.3f}) | {ret['queries']} |",
                  f"| slide retrieval mMV@5, binary coarse codes | {binary['mMV@5']:.3f} | "
                  f"{binary['queries']} |",
                  f"| zero-shot slide subtyping, balanced accuracy (top class) | "
                  f"{zs['balanced_accuracy']:.3f} (abstains on {zs['abstention_rate']:.2f}) | "
                  f"{zs['slides']} |", ""]
    scaling = ROOT / "docs" / "slide-scaling.json"
    if scaling.is_file():
        rows = json.loads(scaling.read_text())["results"]
        lines += ["### Scale: slide → slide search from stored vectors (`benchmarks/"
                  "slide_scaling.py`; details in `docs/slide-scaling.md`)", "",
                  "| slides | tiles | tile vectors B/slide | mean | mosaic | bag | coarse RAM "
                  "float / binary | one-stage ms | two-stage float ms | two-stage binary ms |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            b = r["bytes_per_slide"]
            lines.append(
                f"| {r['slides']:,} | {r['tiles']:,} | {b['tile_vectors']:,} | "
                f"{b['summary_mean']:,} | {b['summary_mosaic']:,} | {b['summary_bag']:,} | "
                f"{b['coarse_ram_float']:,} / {b['coarse_ram_binary']:,} | "
                f"{r['one_stage_ms']['median']:.0f} | {r['two_stage_float_ms']['median']:.0f} | "
                f"{r['two_stage_binary_ms']['median']:.0f} |")
        lines.append("")
    return lines if len(lines) > 2 else []


def previous_bench_section() -> list[str]:
    """With --skip-bench, the engine figures of the last full run are kept, marked as such."""
    old = ROOT / "docs" / "results.md"
    text = old.read_text() if old.is_file() else ""
    if "## Engine benchmarks" not in text:
        return []
    section = text[text.index("## Engine benchmarks"):]
    section = section[:section.index("Total time:")] if "Total time:" in section else section
    title, _, body = section.partition("\n")
    title = title.split(" (kept from")[0]  # one note, however often the section is carried
    return [title + " (kept from the previous full run: `--skip-bench`)", body.rstrip(), ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "results")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    lines = ["# histoseek results", "",
             f"Generated by `python benchmarks/run_all.py{' --quick' if args.quick else ''}` on "
             f"{datetime.now(UTC):%Y-%m-%d} ({platform.processor() or platform.machine()}, "
             f"{__import__('os').cpu_count()} CPU cores, no GPU).", ""]
    FIGURES.mkdir(parents=True, exist_ok=True)
    lines += retrieval_section(args.workdir)
    lines += builtin_model_section(args.workdir)
    lines += ["## histoseek-base v1 (ResNet-10t from scratch; replaced by v2)", "",
              "The records of the first built-in model, kept for comparison; its weights no "
              "longer ship (`histoseek-base-v1` loads them from a file).", ""]
    lines += training_records_section()
    lines += slide_section()
    lines += engine_section()
    if not args.skip_bench:
        lines += bench_section(args.quick)
    else:
        lines += previous_bench_section()
    lines += [f"Total time: {time.perf_counter() - started:.0f} s.", ""]
    text = "\n".join(lines)
    (ROOT / "docs" / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
