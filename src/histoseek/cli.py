"""The ``histoseek`` command: each verb parses, calls one ``Library`` method, prints.

``HistoseekError`` is caught once here and printed as one line with a non-zero exit; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from histoseek.errors import HistoseekError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="histoseek: search whole-slide images, tiles and reports.")
console = Console(soft_wrap=True)  # no newlines inside file paths: logs stay copyable
err_console = Console(stderr=True, soft_wrap=True)


def _fail(exc: HistoseekError) -> None:
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def encoders() -> None:
    """List the registered encoders."""
    from histoseek.encoders.registry import get_encoder_spec, list_encoders

    names = list_encoders()  # the name column never wraps or truncates: users type it
    table = Table(Column("name", no_wrap=True, min_width=max(map(len, names), default=4)),
                  "towers", "offline", "default weights", "description")
    for name in names:
        spec = get_encoder_spec(name)
        table.add_row(name, "+".join(spec.modalities), "yes" if spec.offline else "needs weights",
                      spec.default_pretrained or "-", spec.description)
    console.print(table)


@app.command()
def index(
    library: Annotated[Path, typer.Argument(help="library folder (created if missing)")],
    paths: Annotated[list[Path] | None, typer.Argument(help="slides, images or folders")] = None,
    encoder: Annotated[str | None, typer.Option(help="encoder for a new library")] = None,
    pretrained: Annotated[str | None, typer.Option(help="weights: hub id or local path")] = None,
    mpp: Annotated[float | None, typer.Option(help="microns per pixel, overrides the file")] = None,
    tile: Annotated[int, typer.Option(help="tile size in pixels (new library)")] = 224,
    target_mpp: Annotated[float, typer.Option(help="tile scale in mpp (new library)")] = 0.5,
    min_tissue: Annotated[float, typer.Option(help="min tissue fraction per tile")] = 0.5,
    labels: Annotated[Path | None, typer.Option(help="CSV path,label,source_id")] = None,
    reports: Annotated[
        Path | None, typer.Option(help="CSV report_id,text[,source_id,label]")] = None,
    index_type: Annotated[str, typer.Option("--index", help="flat | hnsw | ivfpq")] = "flat",
    batch_size: Annotated[int, typer.Option(help="tiles per encoder batch")] = 64,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "cpu",
) -> None:
    """Add slides, tiles and reports to a library (re-running resumes, never duplicates)."""
    from histoseek.search.library import Library
    from histoseek.slides.tiling import TilingConfig

    try:
        lib = Library.open_or_create(
            library, encoder=encoder, pretrained=pretrained, index=index_type, device=device,
            tiling=TilingConfig(target_mpp=target_mpp, tile_px=tile, min_tissue=min_tissue))
        with lib:
            failed = 0
            if paths:
                result = lib.add(paths, labels=labels, mpp=mpp, batch_size=batch_size)
                for note in result.grouped_notes():
                    err_console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
                for failure in result.failures:
                    problem = failure.problem if failure.path in failure.problem else (
                        f"{failure.path}: {failure.problem}")  # every line names its file
                    err_console.print(f"[yellow]skipped:[/] {escape(problem)}", highlight=False,
                                      soft_wrap=True)
                console.print(result.summary(), highlight=False)
                failed += len(result.failures)
            if reports:
                result = lib.add_reports(reports)
                for failure in result.failures:
                    err_console.print(f"[yellow]skipped report[/] {escape(failure.path)}: "
                                      f"{escape(failure.problem)}", highlight=False,
                                      soft_wrap=True)
                console.print(result.summary(), highlight=False)
                failed += len(result.failures)
            if not paths and not reports:
                console.print(f"library ready at {library}; nothing to add")
    except HistoseekError as exc:
        _fail(exc)
    if failed:
        raise typer.Exit(1)


@app.command()
def search(
    library: Annotated[Path, typer.Argument(help="library folder")],
    image: Annotated[Path | None, typer.Option(help="query image (a tile)")] = None,
    text: Annotated[str | None, typer.Option(help="query text")] = None,
    slide: Annotated[Path | None, typer.Option(help="query whole slide")] = None,
    region: Annotated[str | None, typer.Option(help="FILE:x,y,w,h in level-0 px")] = None,
    target: Annotated[str | None, typer.Option(help="tiles | slides | reports")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="number of hits")] = 10,
    where: Annotated[list[str] | None, typer.Option(help="key=value filter")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="key=value to exclude")] = None,
    mpp: Annotated[float | None, typer.Option(help="mpp of the query slide")] = None,
    group: Annotated[bool, typer.Option(help="group tile hits by slide")] = False,
    expand: Annotated[bool, typer.Option(help="expand text with knowledge-base attributes")
                      ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per hit")] = False,
) -> None:
    """Search a library by image, region, slide or text."""
    from histoseek.search.inputs import parse_filters
    from histoseek.search.library import Library

    try:
        with Library.open(library) as lib:
            hits = lib.search(image=image, text=text, slide=slide, region=region, k=k,
                              where=parse_filters(where), exclude=parse_filters(exclude),
                              target=target, mpp=mpp, group=group,  # type: ignore[arg-type]
                              expand=expand)
    except HistoseekError as exc:
        _fail(exc)
    if as_json:
        for hit in hits:
            data = hit.to_dict()
            print(json.dumps({key: data[key] for key in (
                "score", "kind", "path", "source_id", "slide", "x", "y", "w", "h", "mpp",
                "label", "text", "metadata", "regions")}))
        return
    print_hits(hits)


def print_hits(hits: list, title: str | None = None) -> None:  # type: ignore[type-arg]
    """Render hits as a table (shared with the demo); columns follow the hit kind."""
    reports = bool(hits) and all(h.kind == "report" for h in hits)
    columns = ["#", "score", "kind", "report" if reports else "source"]
    columns += ["label", "text"] if reports else ["x,y,w,h (level 0)", "mpp", "label"]
    table = Table(*columns, title=title, title_justify="left")
    for rank, hit in enumerate(hits, 1):
        row = [str(rank), f"{hit.score:.3f}", hit.kind, hit.slide or ""]
        if reports:
            text = hit.text or ""
            row += [hit.label or "", text[:90] + ("…" if len(text) > 90 else "")]
        else:
            where = hit.regions[0] if hit.kind == "slide" and hit.regions else hit
            box = "" if where.x is None else f"{where.x},{where.y},{where.w},{where.h}"
            row += [box, "" if where.mpp is None else f"{where.mpp:.3g}", hit.label or ""]
        table.add_row(*row)
    console.print(table)
    if not hits:
        console.print("no hits")


@app.command()
def info(
    library: Annotated[Path, typer.Argument(help="library folder")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Counts of sources, tiles, slides and reports; encoder and index type."""
    from histoseek.search.library import Library

    try:
        with Library.open(library) as lib:
            data = lib.info()
    except HistoseekError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table("field", "value", show_header=False)
    for key, value in data.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)


@app.command()
def remove(
    library: Annotated[Path, typer.Argument(help="library folder")],
    source: Annotated[str, typer.Argument(help="path, file name, sha256 or id of a source")],
) -> None:
    """Delete a source and its vectors."""
    from histoseek.search.library import Library

    try:
        with Library.open(library) as lib:
            n = lib.remove(source)
    except HistoseekError as exc:
        _fail(exc)
    console.print(f"removed {source}: {n} tiles")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="output folder")] = Path("histoseek-demo"),
    encoder: Annotated[str | None, typer.Option(help="encoder (default: the built-in)")] = None,
) -> None:
    """Index the bundled demo set, run one query of each type, write a retrieval grid."""
    from histoseek.demo import run_demo

    try:
        run_demo(out, encoder=encoder)
    except HistoseekError as exc:
        _fail(exc)


@app.command()
def train(
    config: Annotated[Path, typer.Option(help="training YAML (configs/histoseek-base.yaml)")],
    out: Annotated[Path, typer.Option(help="run folder; re-running resumes")],
    epochs: Annotated[int | None, typer.Option(help="override supervised epochs")] = None,
    workers: Annotated[int | None, typer.Option(help="data-loader workers")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto")] = None,
) -> None:
    """Train a histoseek model (packs the data on first use; resumable)."""
    from histoseek.training.config import load_config
    from histoseek.training.loop import train as run_training
    from histoseek.training.pack import build_pack

    try:
        cfg = load_config(config, epochs=epochs, device=device, num_workers=workers)
        pack = Path(cfg.data.pack)
        if not pack.is_file():
            console.print(f"packing training data into {pack}")
            build_pack(Path(cfg.data.labels), Path(cfg.data.split),
                       [(Path(u.path), u.mpp) for u in cfg.data.unlabelled], pack,
                       cfg.data.val_fraction, cfg.seed)
        best = run_training(cfg, out)
    except HistoseekError as exc:
        _fail(exc)
    console.print(f"weights: {best}\nmetrics: {out / 'metrics.csv'}\ncurve: "
                  f"{out / 'loss_curve.png'}")


eval_app = typer.Typer(no_args_is_help=True,
                       help="Measure encoders with the field's retrieval metrics.")
app.add_typer(eval_app, name="eval")


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise typer.BadParameter(f"--k must be a comma list of integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise typer.BadParameter("--k needs positive integers")
    return ks


@eval_app.command("retrieval")
def eval_retrieval(
    data: Annotated[Path, typer.Option(help="labels.csv or ImageFolder")],
    encoder: Annotated[list[str], typer.Option(help="encoder name (repeatable)")],
    out: Annotated[Path, typer.Option(help="output folder")],
    exclude_same: Annotated[str | None, typer.Option(
        help="never count neighbours sharing this column (source_id)")] = None,
    k: Annotated[str, typer.Option("--k", help="cut-offs, e.g. 1,5,10")] = "1,5,10",
    split: Annotated[Path | None, typer.Option(help="split JSON from 'eval split'")] = None,
    subset: Annotated[str, typer.Option(help="all | train | test (with --split)")] = "all",
    cache: Annotated[Path | None, typer.Option(help="embedding cache folder")] = None,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Image retrieval, leave-one-source-out with --exclude-same source_id."""
    from histoseek.evaluation.report import markdown_table
    from histoseek.evaluation.retrieval import RetrievalSetup, evaluate_retrieval

    try:
        results = evaluate_retrieval(RetrievalSetup(
            data=data, encoders=tuple(encoder), out=out, ks=_ks(k), exclude_same=exclude_same,
            split=split, subset=subset, cache_dir=cache, device=device))
    except HistoseekError as exc:
        _fail(exc)
    print(markdown_table(results))
    console.print(f"written to {out}: metrics.json, report.md, rankings.csv, *.png")


@eval_app.command("zeroshot")
def eval_zeroshot(
    data: Annotated[Path, typer.Option(help="labels.csv or ImageFolder")],
    classes: Annotated[Path, typer.Option(help="YAML/JSON: templates + class descriptions")],
    encoder: Annotated[str, typer.Option(help="two-tower encoder")],
    out: Annotated[Path, typer.Option(help="output folder")],
    split: Annotated[Path | None, typer.Option(help="split JSON")] = None,
    subset: Annotated[str, typer.Option(help="all | train | test")] = "all",
    cache: Annotated[Path | None, typer.Option(help="embedding cache folder")] = None,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Zero-shot classification from class descriptions (no labels used to fit)."""
    from histoseek.evaluation.crossmodal import evaluate_zeroshot
    from histoseek.evaluation.report import markdown_table

    try:
        result = evaluate_zeroshot(data, classes, encoder, out, split, subset, cache, device)
    except HistoseekError as exc:
        _fail(exc)
    print(markdown_table({encoder: result}))


@eval_app.command("crossmodal")
def eval_crossmodal(
    pairs: Annotated[Path, typer.Option(help="CSV image,text")],
    encoder: Annotated[str, typer.Option(help="two-tower encoder")],
    out: Annotated[Path, typer.Option(help="output folder")],
    cache: Annotated[Path | None, typer.Option(help="embedding cache folder")] = None,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Image-text retrieval on pairs: R@1/5/10 both ways, median rank."""
    from histoseek.evaluation.crossmodal import evaluate_crossmodal
    from histoseek.evaluation.report import markdown_table

    try:
        result = evaluate_crossmodal(pairs, encoder, out, cache, device)
    except HistoseekError as exc:
        _fail(exc)
    print(markdown_table({encoder: result}))


@eval_app.command("split")
def eval_split(
    data: Annotated[Path, typer.Option(help="labels.csv with source_id")],
    out: Annotated[Path, typer.Option(help="split JSON to write")],
    test_fraction: Annotated[float, typer.Option()] = 0.3,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Write a seeded train/test split by source id (never by tile)."""
    from histoseek.evaluation.datasets import load_dataset
    from histoseek.evaluation.protocols import split_by_source

    try:
        dataset = load_dataset(data)
        split = split_by_source(dataset, test_fraction, seed)
    except HistoseekError as exc:
        _fail(exc)
    split.save(out)
    train, test = split.indices(dataset)
    console.print(f"{out}: {len(split.train_sources)} train sources ({len(train)} images), "
                  f"{len(split.test_sources)} test sources ({len(test)} images), seed {seed}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted: run the same command again to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
