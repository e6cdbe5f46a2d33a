"""The ``histoseek`` command: each verb parses, calls one ``Library`` method, prints.

``HistoseekError`` is caught once, in ``_Commands.invoke``, and printed as one line with exit
status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table
from typer.core import TyperGroup

from histoseek.errors import HistoseekError, InputError

console = Console(soft_wrap=True)  # no newlines inside file paths: logs stay copyable
err_console = Console(stderr=True, soft_wrap=True)
_ONE_SHOT = False  # True when ``main`` runs this process: one command, then exit


class _Commands(TyperGroup):
    """Every command runs through here: a ``HistoseekError`` becomes one line, exit 2."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except HistoseekError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(2) from None
        except sqlite3.DatabaseError as exc:  # pages damaged after the file opened
            err_console.print(
                f"[bold red]error:[/] the library database is damaged ({escape(str(exc))}); "
                "restore library.sqlite from a backup (histoseek check LIB says more)",
                highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True,
                  help="histoseek: search whole-slide images, tiles and reports.")


@app.command()
def encoders(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per encoder")] = False,
) -> None:
    """List the registered encoders."""
    from histoseek.encoders.registry import get_encoder_spec, list_encoders

    names = list_encoders()
    if as_json:
        for name in names:
            spec = get_encoder_spec(name)
            print(json.dumps({"name": name, "towers": list(spec.modalities),
                              "offline": spec.offline, "default_weights": spec.default_pretrained,
                              "ships_weights": spec.ships_weights,
                              "description": spec.description}))
        return
    # names and hub ids never wrap or get cut: users type them into the next command
    table = Table(Column("name", no_wrap=True, min_width=max(map(len, names), default=4)),
                  "towers", "offline", Column("default weights", overflow="fold"),
                  Column("description", ratio=1, overflow="fold"))
    for name in names:
        spec = get_encoder_spec(name)
        table.add_row(name, "+".join(spec.modalities), "yes" if spec.offline else "needs weights",
                      spec.weights_note, spec.description)
    console.print(table)


def _warn(prefix: str, message: str) -> None:
    err_console.print(f"{prefix} {escape(message)}", highlight=False, soft_wrap=True)


@app.command()
def index(
    library: Annotated[Path, typer.Argument(help="library folder (created if missing)")],
    paths: Annotated[list[Path] | None, typer.Argument(help="slides, images or folders")] = None,
    encoder: Annotated[str | None, typer.Option(
        help="encoder of a new library [default: histoseek-base]")] = None,
    pretrained: Annotated[str | None, typer.Option(help="weights: hub id or local path")] = None,
    mpp: Annotated[float | None, typer.Option(help="microns per pixel, overrides the file")] = None,
    tile: Annotated[int | None, typer.Option(
        help="tile size in pixels of a new library [default: 224]")] = None,
    target_mpp: Annotated[float | None, typer.Option(
        help="tile scale in mpp of a new library [default: 0.5]")] = None,
    min_tissue: Annotated[float | None, typer.Option(
        help="min tissue fraction per tile of a new library [default: 0.5]")] = None,
    labels: Annotated[Path | None, typer.Option(
        help="CSV path,label[,source_id,slide_id,...]")] = None,
    reports: Annotated[
        Path | None, typer.Option(help="CSV report_id,text[,source_id,label]")] = None,
    index_type: Annotated[str | None, typer.Option(
        "--index", help="flat | hnsw | ivfpq, for a new library [default: flat]")] = None,
    vector_store: Annotated[str | None, typer.Option(
        help="where a new library keeps its vectors: faiss, a Milvus Lite file PATH.db, or a "
             "Milvus server http://host:19530 [default: faiss]")] = None,
    batch_size: Annotated[int, typer.Option(help="tiles per encoder batch")] = 64,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "cpu",
    ray: Annotated[str | None, typer.Option(
        help="read and encode on a Ray cluster: auto (started by 'ray start'), local, or "
             "ray://host:10001; this process still does every write")] = None,
) -> None:
    """Add slides, tiles and reports to a library (re-running resumes, never duplicates).

    Settings of an existing library (encoder, tiling, index) cannot change: an option that
    differs from the library's is refused.
    """
    from histoseek.library import Library

    if paths and not reports and not any(os.path.lexists(p) for p in paths):
        raise InputError("; ".join(f"{p}: no such file or folder" for p in paths)
                         + ": nothing to index, no library created or changed")
    tiling = {k: v for k, v in (("tile_px", tile), ("target_mpp", target_mpp),
                                ("min_tissue", min_tissue)) if v is not None}
    lib = Library.open_or_create(library, encoder=encoder, pretrained=pretrained,
                                 index=index_type, tiling=tiling,  # type: ignore[arg-type]
                                 device=device, vector_store=vector_store)
    failed = 0
    with lib:
        if paths:
            result = lib.add(paths, labels=labels, mpp=mpp, batch_size=batch_size, ray=ray)
            for note in result.grouped_notes():
                _warn("note:", note)
            for failure in result.failures:
                problem = failure.problem if failure.path in failure.problem else (
                    f"{failure.path}: {failure.problem}")  # every line names its file
                _warn("[yellow]skipped:[/]", problem)
            console.print(result.summary(), highlight=False)
            failed += len(result.failures)
        if reports:
            result = lib.add_reports(reports)
            for note in result.notes:
                _warn("note:", note)
            for failure in result.failures:
                _warn("[yellow]skipped report[/]", f"{failure.path}: {failure.problem}")
            console.print(result.summary(), highlight=False)
            failed += len(result.failures)
        if not paths and not reports:
            console.print(f"library ready at {library}; nothing to add")
    if failed:
        raise typer.Exit(1)


HIT_FIELDS = ("score", "kind", "path", "source_id", "slide", "report_id", "x", "y", "w", "h",
              "mpp", "label", "text", "metadata", "regions", "query_box")


@app.command()
def search(
    library: Annotated[Path, typer.Argument(help="library folder")],
    image: Annotated[Path | None, typer.Option(help="query image (a tile)")] = None,
    text: Annotated[str | None, typer.Option(help="query text")] = None,
    slide: Annotated[Path | None, typer.Option(help="query whole slide")] = None,
    region: Annotated[str | None, typer.Option(help="FILE:x,y,w,h in level-0 px")] = None,
    target: Annotated[str | None, typer.Option(help="tiles | slides | reports")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="number of hits (of slides with --group)")
                 ] = 10,
    where: Annotated[list[str] | None, typer.Option(help="key=value filter")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="key=value to exclude")] = None,
    mpp: Annotated[float | None, typer.Option(help="mpp of the query slide or image")] = None,
    group: Annotated[bool, typer.Option(help="group tile hits by slide")] = False,
    level: Annotated[str | None, typer.Option(
        help="tile | region (neighbouring tile hits merged into boxes) | slide")] = None,
    include_query_region: Annotated[bool, typer.Option(
        help="keep hits inside the query's own box (--region) or the query slide itself "
             "(--slide)")] = False,
    exhaustive: Annotated[bool, typer.Option(
        help="--slide for slides: score every indexed tile instead of two stages over the "
             "stored slide summaries (slow; for comparison)")] = False,
    slide_codes: Annotated[str, typer.Option(
        help="--slide for slides: coarse stage on float mosaics or binary codes")] = "float",
    expand: Annotated[bool, typer.Option(
        help="spell out abbreviations in a text query; for reports also fuse in knowledge-base "
             "sentences")] = True,
    grid: Annotated[Path | None, typer.Option(help="also write a retrieval grid PNG here")
                    ] = None,
    heatmaps: Annotated[Path | None, typer.Option(
        help="also write one heatmap PNG per hit slide into this folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per hit, per line")
                       ] = False,
) -> None:
    """Search a library by image, region, slide or text."""
    _no_cyclic_gc()
    from histoseek.library import Library
    from histoseek.search.arguments import parse_filters
    from histoseek.viz.hit_table import print_hits

    with Library.open(library) as lib:
        hits = lib.search(image=image, text=text, slide=slide, region=region, k=k,
                          where=parse_filters(where), exclude=parse_filters(exclude),
                          target=target, mpp=mpp, group=group,  # type: ignore[arg-type]
                          expand=expand, level=level,  # type: ignore[arg-type]
                          include_query_region=include_query_region, exhaustive=exhaustive,
                          slide_codes=slide_codes)  # type: ignore[arg-type]
        if grid is not None:
            from histoseek.knowledge.abbreviations import spell_out

            _write_grid(lib, grid, hits, image=image, text=text, slide=slide, region=region,
                        mpp=mpp, searched=spell_out(text) if text and expand else None)
        kind = next(k for k, v in (("image", image), ("text", text), ("slide", slide),
                                   ("region", region)) if v is not None)
        pictures = [] if heatmaps is None else lib.write_heatmaps(
            hits, heatmaps, title=f"{kind} query, encoder {lib.manifest.encoder_name}")
    if as_json:
        for hit in hits:
            data = hit.to_dict()
            print(json.dumps({key: data[key] for key in HIT_FIELDS}))
    else:
        print_hits(hits, console=console)
    if grid is not None:
        err_console.print(f"retrieval grid: {grid}", highlight=False, soft_wrap=True)
    for picture in pictures:
        err_console.print(f"heatmap: {picture}", highlight=False, soft_wrap=True)


@app.command()
def classify(
    slides: Annotated[list[Path], typer.Argument(help="slides or images to classify")],
    classes: Annotated[str | None, typer.Option(
        help="prompts YAML, or comma-separated knowledge-tree classes (default: the "
             "colorectal EBHI set)")] = None,
    library: Annotated[Path | None, typer.Option(
        help="use this library's encoder and, for slides indexed in it, its stored tiles")
    ] = None,
    encoder: Annotated[str, typer.Option(help="encoder when no --library is given")
                       ] = "histoseek-base",
    mpp: Annotated[float | None, typer.Option(help="mpp of the slide, if it lacks one")] = None,
    top_k: Annotated[int, typer.Option(help="tiles pooled per class")] = 10,
    min_margin: Annotated[float, typer.Option(
        help="abstain when the best class's probability leads the next by less")] = 0.1,
    heatmaps: Annotated[Path | None, typer.Option(
        help="write one PNG per slide: similarity to the top class, driving tiles boxed")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per slide")] = False,
) -> None:
    """Zero-shot slide subtyping from knowledge-tree class descriptions; abstains when no
    class is clearly ahead."""
    from histoseek.search.classify import resolve_classes
    from histoseek.viz.classify_picture import print_classification, write_classification_heatmap

    if library is not None:
        from histoseek.library import Library

        lib = Library.open(library)
        run = lambda path: lib.classify(path, classes, mpp, top_k, min_margin)  # noqa: E731
    else:
        from histoseek.encoders.registry import create_encoder
        from histoseek.knowledge.tree import EBHI_SEG_CLASSES
        from histoseek.search.classify import classify_slide_file
        from histoseek.slides.tiling import TilingConfig

        prompts = resolve_classes(classes, EBHI_SEG_CLASSES)
        model = create_encoder(encoder)
        run = lambda path: classify_slide_file(  # noqa: E731
            path, model, TilingConfig(), prompts, mpp, top_k=top_k, min_margin=min_margin)
    failed = 0
    for path in slides:
        try:
            result = run(path)
        except HistoseekError as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            failed += 1
            continue
        if as_json:
            print(json.dumps(result.to_dict()))
        else:
            print_classification(result, console)
        if heatmaps is not None:
            picture = write_classification_heatmap(result, heatmaps)
            err_console.print(f"heatmap: {picture}", highlight=False, soft_wrap=True)
    if library is not None:
        lib.close()
    if failed:
        raise typer.Exit(1)


@app.command()
def serve(
    library: Annotated[Path, typer.Argument(help="library folder")],
    host: Annotated[str, typer.Option(
        help="address to listen on; the default answers this machine only")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    root: Annotated[list[Path] | None, typer.Option(
        help="folder whose files POST /ingest may add (repeatable); none: ingest is off")
    ] = None,
    private: Annotated[bool, typer.Option(help="reads need the token too")] = False,
    max_upload_mb: Annotated[float, typer.Option(help="largest request body, in MB")] = 20.0,
    timeout: Annotated[float, typer.Option(
        help="seconds a search, classification or picture may take (then 504)")] = 60.0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "cpu",
) -> None:
    """Serve a library over HTTP: search, classify, slide pictures and viewer tiles; writes
    need the service token. API docs at http://HOST:PORT/docs (needs the serve extra:
    pip install "histoseek[serve]")."""
    from histoseek.service.run import serve as run_service
    from histoseek.service.settings import ServiceSettings

    run_service(library, ServiceSettings(
        host=host, port=port, roots=tuple(root or ()), private=private,
        max_upload_mb=max_upload_mb, timeout_s=timeout, device=device))


def _no_cyclic_gc() -> None:
    """The cyclic GC off for the rest of a one-shot search process.

    Importing torch, timm and transformers makes millions of objects, and the collector
    re-walks them again and again while they load (10-20% of a search's import time); a search
    leaves no cycles worth collecting before its process ends, and reference counting still
    frees everything else. Only when ``main`` runs the process: in-process callers (tests, the
    ``CliRunner``) keep their collector.
    """
    if _ONE_SHOT:
        gc.disable()


def _write_grid(lib, out: Path, hits, **query) -> None:  # type: ignore[no-untyped-def]
    from histoseek.viz.hit_grid import query_picture, write_hits_grid

    picture = query_picture(tile_px=lib.tiling.tile_px, target_mpp=lib.tiling.target_mpp,
                            **query)
    kind = next(k for k in ("image", "text", "slide", "region") if query.get(k) is not None)
    write_hits_grid(picture, hits, lib.hit_picture, out,
                    title=f"{kind} query: top {len(hits)} hits, encoder "
                          f"{lib.manifest.encoder_name}")


@app.command("list")
def list_sources(
    library: Annotated[Path, typer.Argument(help="library folder")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per source, per line")
                       ] = False,
) -> None:
    """List the sources in a library: id, name, label, case, scale, tiles."""
    from histoseek.library import Library

    with Library.open(library) as lib:
        rows = lib.sources()
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table("id", Column("name", overflow="fold"), "kind", Column("label", overflow="fold"),
                  Column("source_id", overflow="fold"), "mpp", "tiles",
                  title=f"{len(rows)} sources in {library}", title_justify="left")
    for row in rows:
        table.add_row(str(row["id"]), row["name"], row["kind"], row["label"] or "",
                      row["source_id"] or "", "" if row["mpp"] is None else f"{row['mpp']:.3g}",
                      str(row["n_tiles"]))
    console.print(table)


@app.command()
def info(
    library: Annotated[Path, typer.Argument(help="library folder")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Counts of sources, tiles, slides and reports; encoder and index type."""
    from histoseek.library import Library

    with Library.open(library) as lib:
        data = lib.info()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table("field", Column("value", overflow="fold"), show_header=False)
    for key, value in data.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)


@app.command()
def remove(
    library: Annotated[Path, typer.Argument(help="library folder")],
    source: Annotated[str, typer.Argument(
        help="a source's path, file name, sha256 or id, or a report's report_id")],
) -> None:
    """Delete a source and its tiles, or a report, with their vectors."""
    from histoseek.library import Library

    with Library.open(library) as lib:
        removed = lib.remove(source)
    parts = ([f"{removed.sources} source(s), {removed.tiles} tiles"] if removed.sources else [])
    parts += [f"{removed.reports} report(s)"] if removed.reports else []
    console.print(f"removed {source}: {' and '.join(parts)}", highlight=False)


@app.command()
def check(library: Annotated[Path, typer.Argument(help="library folder")]) -> None:
    """Verify the library on disk: SQLite pages, vector checksums, index files, and that
    every index holds exactly the stored records and vectors. Exit 1 on any problem."""
    from histoseek.library import Library

    with Library.open(library) as lib:
        health = lib.check()
    for problem in health.problems:
        _warn("[bold red]problem:[/]", problem)
    held = ", ".join(f"{n:,} {space}" for space, n in health.records.items() if n)
    verdict = "ok" if health.ok else f"{len(health.problems)} problem(s)"
    console.print(f"{library}: {verdict} ({held or 'no'} vectors checked)", highlight=False)
    if not health.ok:
        raise typer.Exit(1)


@app.command()
def repair(library: Annotated[Path, typer.Argument(help="library folder")]) -> None:
    """Rebuild every vector index from the library's stored vectors (after 'check' finds a
    damaged or disagreeing index). SQLite itself cannot be repaired: restore it from a backup."""
    from histoseek.library import Library

    with Library.open(library) as lib:
        rebuilt = lib.repair()
    done = ", ".join(f"{n:,} {space}" for space, n in rebuilt.items()) or "no"
    console.print(f"{library}: rebuilt the index from {done} stored vectors", highlight=False)


@app.command()
def migrate(
    library: Annotated[Path, typer.Argument(help="library folder")],
    to: Annotated[str, typer.Option(
        help="faiss, a Milvus Lite file PATH.db, or a Milvus server http://host:19530")],
) -> None:
    """Move a library's vector indexes to another backend, rebuilt from its stored vectors.

    The library folder (SQLite records and vectors) stays where it is; only the ANN index
    moves. The old backend's files or collections are left untouched.
    """
    from histoseek.library import Library

    with Library.open(library) as lib:
        done = lib.migrate(to)
    copied = ", ".join(f"{n:,} {space}" for space, n in done.vectors.items()) or "no"
    console.print(f"{library}: {copied} vectors copied from {done.source} to {done.target}; "
                  "the library now searches there", highlight=False)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="output folder")] = Path("histoseek-demo"),
    encoder: Annotated[str | None, typer.Option(help="encoder (default: the built-in)")] = None,
) -> None:
    """Index the bundled demo set, run one query of each type, write a retrieval grid."""
    from histoseek.demo import run_demo

    run_demo(out, encoder=encoder)


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

    cfg = load_config(config, epochs=epochs, device=device, num_workers=workers)
    pack = Path(cfg.data.pack)
    if not pack.is_file():
        console.print(f"packing training data into {pack}")
        build_pack(Path(cfg.data.labels), Path(cfg.data.split),
                   [(Path(u.path), u.mpp) for u in cfg.data.unlabelled], pack,
                   cfg.data.val_fraction, cfg.seed)
    best = run_training(cfg, out)
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

    results = evaluate_retrieval(RetrievalSetup(
        data=data, encoders=tuple(encoder), out=out, ks=_ks(k), exclude_same=exclude_same,
        split=split, subset=subset, cache_dir=cache, device=device))
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

    result = evaluate_zeroshot(data, classes, encoder, out, split, subset, cache, device)
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

    result = evaluate_crossmodal(pairs, encoder, out, cache, device)
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

    dataset = load_dataset(data)
    split = split_by_source(dataset, test_fraction, seed)
    split.save(out)
    train, test = split.indices(dataset)
    console.print(f"{out}: {len(split.train_sources)} train sources ({len(train)} images), "
                  f"{len(split.test_sources)} test sources ({len(test)} images), seed {seed}")


def main() -> None:
    """Console-script entry point."""
    global _ONE_SHOT
    _ONE_SHOT = True
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted: run the same command again to resume")
        sys.exit(130)
    finally:
        # At shutdown the cyclic GC walks every object torch & co. made (1-2 s after a search).
        # Freezing them skips only that walk: the commands close their libraries and files
        # themselves, atexit handlers still run and the interpreter still flushes stdout.
        gc.freeze()


if __name__ == "__main__":
    main()
