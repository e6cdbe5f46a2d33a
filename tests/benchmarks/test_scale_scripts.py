"""The scale benchmarks' cores on tiny inputs: regenerable vectors, exact neighbours, a flat
index at 5k with recall 1, the markdown sections (another's kept), and a pyramidal TIFF
histoseek reads at 0.25 mpp and tiles."""

from __future__ import annotations

import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import large_tiff_memory as tiff
import scale_vectors as sv


@pytest.fixture(scope="module")
def gen() -> sv.SyntheticVectors:
    return sv.SyntheticVectors(dim=64, centres=50, latent_dim=4)


def test_rows_are_a_function_of_their_ids(gen: sv.SyntheticVectors) -> None:
    chunk = gen.rows(np.arange(1000))
    picked = np.array([999, 3, 3, 500])
    assert np.allclose(gen.rows(picked), chunk[picked], atol=1e-6)
    assert np.allclose(np.linalg.norm(chunk, axis=1), 1.0, atol=1e-5)


def test_exact_neighbours_match_brute_force(gen: sv.SyntheticVectors) -> None:
    queries, _ = gen.queries(20, 1000)
    truth = sv.exact_neighbours(gen, queries, [700, 3000], k=10, chunk=400, log=lambda _: None)
    for n in (700, 3000):
        _, ids = faiss.knn(queries, gen.rows(np.arange(n)), 10, metric=faiss.METRIC_INNER_PRODUCT)
        assert sv.recall_at(truth[n], ids, 10) > 0.99  # ties may order differently


def test_flat_index_has_recall_one_and_docs_sections_are_kept(
        gen: sv.SyntheticVectors, tmp_path: Path) -> None:
    settings = sv.Settings(kinds=["flat"], sizes={"flat": [5000]}, library=[], queries=20,
                           latency_queries=20, latency_seconds=0.1, chunk=2000)
    queries, _ = gen.queries(20, 5000)
    truth = sv.exact_neighbours(gen, queries, [5000], 10, 2000, log=lambda _: None)
    rows = sv.measure_kind("flat", [5000], gen, queries, truth, settings, tmp_path,
                           log=lambda _: None)
    assert rows[0]["recall_at_10"] == 1.0 and rows[0]["bytes_per_vector"] >= 4 * 64
    doc = tmp_path / "scaling.md"
    doc.write_text("# x\n\n<!-- ingest:begin -->\nsomeone else's\n<!-- ingest:end -->\n")
    results = {"settings": sv.asdict(settings) | {"generator": sv.asdict(gen)},
               "runs": [{"command": "test", "step_seconds": {"kind:flat": 1}}],
               "rows": rows, "library": []}
    for _ in range(2):  # the second write replaces the section (the plot is left out: slow)
        sv.write_section(doc, "vectors", sv.vector_section(results, tmp_path / "p.png", doc))
        sv.write_section(doc, "sizing", sv.sizing_section(results))
    text = doc.read_text()
    assert "someone else's" in text and text.count("<!-- vectors:begin -->") == 1
    assert "| flat | 5,000 |" in text and "10^9" in text


def test_synthetic_tiff_is_a_pyramid_histoseek_tiles(tmp_path: Path) -> None:
    from histoseek.slides.reader import open_slide
    from histoseek.slides.tiling import tile_slide

    path = tiff.write_slide(tmp_path / "s.tif", 4500, 2000, tiff.he_atlas(256))
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx(0.25) and slide.mpp_source == "file"
        assert slide.level_dimensions == ((4500, 4500), (1125, 1125))
        grid = tile_slide(slide)
    assert 9 <= len(grid) <= 25  # the 2,000 px tissue square in 448 px tiles (0.5 mpp)
