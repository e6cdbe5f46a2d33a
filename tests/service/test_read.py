"""Read endpoints: each answers what the matching ``Library`` method returns."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient
from PIL import Image

from histoseek.library import Library
from histoseek.service.deepzoom import DeepZoomCache
from service.helpers import AUTH, REPORTS, Built, assert_error, make_client


def source_ids(client: TestClient) -> dict[str, int]:
    return {s["name"]: s["id"] for s in client.get("/sources").json()["sources"]}


def test_health_info_and_docs(client: TestClient, built: Built) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["encoder"] == "fake-hist"
    assert health["ingest"] is False and health["private"] is False
    with Library.open(built.library) as lib:
        expected = lib.info()
    assert client.get("/info").json() == expected
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/search/text", "/search/image", "/ingest", "/slides/{source_id}.dzi"} <= set(paths)


def test_sources_slides_and_one_source(client: TestClient, built: Built) -> None:
    listed = client.get("/sources").json()
    assert listed["total"] == 3
    with Library.open(built.library) as lib:
        assert listed["sources"] == lib.sources()
    slides = client.get("/slides").json()
    assert slides["total"] == 2 and {s["kind"] for s in slides["sources"]} == {"slide"}
    assert client.get("/sources", params={"limit": 1, "offset": 1}).json()["sources"] == [
        listed["sources"][1]]
    first = listed["sources"][0]
    for key in (first["id"], first["name"], first["sha256"]):
        assert client.get(f"/sources/{key}").json() == first
    detail = client.get(f"/slides/{first['id']}").json()
    assert detail["pyramid"]["level_dimensions"][0] == [first["width"], first["height"]]
    assert detail["links"]["dzi"] == f"/slides/{first['id']}.dzi"
    assert_error(client.get("/sources/999999"), 404)
    assert_error(client.get("/slides/999999"), 404)
    for digits in ("\u00b9", "\u0661"):  # isdigit() but not ASCII (found by schemathesis)
        assert_error(client.get(f"/sources/{digits}"), 404)


def test_reports(client: TestClient) -> None:
    listed = client.get("/reports").json()
    assert listed["total"] == 2
    assert [r["report_id"] for r in listed["reports"]] == [r["report_id"] for r in REPORTS]
    assert client.get("/reports", params={"offset": 2**63 - 1}).json()["reports"] == []
    assert_error(client.get("/reports", params={"offset": 2**64}), 422)  # found by schemathesis
    one = client.get("/reports/r-polyp").json()
    assert one["text"] == REPORTS[0]["text"] and one["label"] == "polyp"
    assert_error(client.get("/reports/nope"), 404)


def test_text_search_reports_and_tiles(client: TestClient, built: Built) -> None:
    body = client.post("/search/text", json={"text": "polyp", "k": 2}).json()
    assert body["count"] == 2 and body["hits"][0]["kind"] == "report"
    assert body["hits"][0]["report_id"] == "r-polyp"
    tiles = client.post("/search/text", json={"text": "polyp", "target": "tiles", "k": 5}).json()
    with Library.open(built.library, encoder=_fake(), text_encoder=_fake()) as lib:
        expected = lib.search(text="polyp", target="tiles", k=5)
    assert [h["id"] for h in tiles["hits"]] == [h.id for h in expected]
    ids = source_ids(client)
    assert all(h["source"] == ids[h["path"].rsplit("/", 1)[-1]] for h in tiles["hits"])


def _fake():  # type: ignore[no-untyped-def]
    from search.test_slide_search import FakeHist

    return FakeHist()


def test_image_region_and_slide_search(client: TestClient, built: Built) -> None:
    with open(built.spare, "rb") as fh:
        found = client.post("/search/image", files={"file": ("q.png", fh, "image/png")},
                            data={"k": "3", "where": '{"kind": "slide"}'}).json()
    assert found["count"] == 3 and found["query"]["format"] == "PNG"
    assert all(h["kind"] == "tile" and h["source_kind"] == "slide" for h in found["hits"])
    slide_id = source_ids(client)[built.slides[0].name]
    region = client.post("/search/region", json={"source": slide_id, "x": 0, "y": 0,
                                                 "w": 448, "h": 448, "k": 4}).json()
    assert region["count"] == 4 and region["query"]["source"] == slide_id
    slides = client.post("/search/slide", json={"source": str(built.slides[0]), "k": 5,
                                                "where": {"kind": "slide"}}).json()
    assert [h["path"] for h in slides["hits"]] == [str(built.slides[1])]  # not itself
    assert slides["hits"][0]["source"] == source_ids(client)[built.slides[1].name]


def test_classify_matches_the_library(client: TestClient, built: Built) -> None:
    slide_id = source_ids(client)[built.slides[0].name]
    classes = ["adenocarcinoma", "polyp", "normal"]
    got = client.post("/classify", json={"source": slide_id, "classes": classes}).json()
    with Library.open(built.library, encoder=_fake(), text_encoder=_fake()) as lib:
        expected = lib.classify(built.slides[0], classes, progress=False).to_dict()
    assert got == {**expected, "source": slide_id}
    assert_error(client.post("/classify", json={"source": slide_id, "classes": ["polyp"]}), 400)


def _png(response) -> Image.Image:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def test_thumbnail_and_heatmaps(client: TestClient, built: Built) -> None:
    slide_id = source_ids(client)[built.slides[0].name]
    assert max(_png(client.get(f"/slides/{slide_id}/thumbnail.png?size=300")).size) == 300
    assert_error(client.get(f"/slides/{slide_id}/thumbnail.png?size=99999"), 400)
    heat = _png(client.get(f"/slides/{slide_id}/heatmap.png", params={"text": "polyp"}))
    assert heat.size[0] > 100
    _png(client.get(f"/slides/{slide_id}/heatmap.png",
                    params={"region": f"{slide_id}:0,0,448,448", "k": 3}))
    assert_error(client.get(f"/slides/{slide_id}/heatmap.png"), 400)
    assert_error(client.get(f"/slides/{slide_id}/heatmap.png?region=nope"), 400)


@pytest.mark.parametrize("use_openslide", [True, False])
def test_deep_zoom_descriptor_and_tiles(client: TestClient, built: Built,
                                        use_openslide: bool) -> None:
    service = client.app.state.service
    service.deepzoom.close()
    service.deepzoom = DeepZoomCache(2, use_openslide=use_openslide)
    ids = source_ids(client)
    for name in (built.slides[0].name, built.image.name):
        sid = ids[name]
        dzi = client.get(f"/slides/{sid}.dzi")
        assert dzi.status_code == 200 and "TileSize=\"254\"" in dzi.text
        generator = service.deepzoom._entry(sid, client.get(f"/sources/{sid}").json()["path"])
        kind = type(generator.generator).__name__
        if not use_openslide or name.endswith(".png"):
            assert kind == "SlideDeepZoom"
        top = generator.generator.level_count - 1
        cols, rows = generator.generator.level_tiles[top]
        tile = client.get(f"/slides/{sid}_files/{top}/{cols - 1}_{rows - 1}.jpeg")
        assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"
        picture = Image.open(io.BytesIO(tile.content))
        assert picture.size[0] <= 256 and picture.size[1] <= 256
        assert Image.open(io.BytesIO(client.get(f"/slides/{sid}_files/0/0_0.png").content)
                          ).size == (1, 1)
        assert_error(client.get(f"/slides/{sid}_files/{top}/{cols}_0.jpeg"), 404)
        assert_error(client.get(f"/slides/{sid}_files/{top + 1}/0_0.jpeg"), 404)
        assert_error(client.get(f"/slides/{sid}_files/0/0_0.gif"), 404)
    assert_error(client.get("/slides/999999.dzi"), 404)


def test_the_fallback_draws_the_same_pixels_as_openslide(built: Built) -> None:
    """The fallback generator's tiles match OpenSlide's DeepZoomGenerator (same geometry)."""
    import numpy as np

    a, b = DeepZoomCache(1, use_openslide=True), DeepZoomCache(1, use_openslide=False)
    path = str(built.slides[0])
    ea, eb = a._entry(1, path), b._entry(1, path)
    assert ea.generator.level_tiles == eb.generator.level_tiles
    top = ea.generator.level_count - 1
    for level in (top, top - 2):
        tile_a = np.asarray(Image.open(io.BytesIO(a.tile(1, path, level, 1, 1, "png"))), float)
        tile_b = np.asarray(Image.open(io.BytesIO(b.tile(1, path, level, 1, 1, "png"))), float)
        assert tile_a.shape == tile_b.shape
        assert np.abs(tile_a - tile_b).mean() < 8
    a.close()
    b.close()


def test_private_mode_guards_reads_but_not_health(built: Built) -> None:
    with make_client(built.library, private=True) as c:
        assert c.get("/health").status_code == 200
        assert_error(c.get("/info"), 401)
        assert_error(c.get("/sources", headers={"Authorization": "Bearer wrong"}), 403)
        assert_error(c.post("/search/text", json={"text": "polyp"}), 401)
        assert c.get("/info", headers=AUTH).status_code == 200
