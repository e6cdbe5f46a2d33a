"""The web page in a real headless browser: playwright driving Debian's chromium (playwright
never downloads a browser here) against the real service, run by uvicorn on a loopback port
over the small test library of ``conftest.py``.

Screenshots go to ``tests/artifacts/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("playwright")

import uvicorn
from playwright.sync_api import sync_playwright

from histoseek.service.app import create_app
from histoseek.service.settings import ServiceSettings
from search.test_slide_search import FakeHist
from service.helpers import TOKEN, Built

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 420, "height": 800}
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=(
        "no /usr/bin/chromium: the browser tests drive Debian's chromium (apt-get install "
        "chromium; .ci/run installs it)")),
]


@contextmanager
def serving(library: Path, **settings: Any) -> Iterator[str]:
    """The real app, served by uvicorn from a thread on a free loopback port: its URL."""
    app = create_app(library, ServiceSettings(token=TOKEN, **settings), encoder=FakeHist(),
                     text_encoder=FakeHist(), announce=lambda _: None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture(scope="module")
def base_url(built: Built) -> Iterator[str]:
    with serving(built.library) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@contextmanager
def new_page(browser: Any, url: str) -> Iterator[Any]:
    """A fresh page at 1280×800 opened at ``url``; fails on any script or console error."""
    context = browser.new_context(viewport=WIDE, base_url=url)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.goto(url)
    yield tab
    context.close()
    assert not errors, errors


@pytest.fixture
def page(browser: Any, base_url: str) -> Iterator[Any]:
    """A fresh page on the loaded library."""
    with new_page(browser, base_url) as tab:
        tab.wait_for_selector("body[data-ready]")
        yield tab


def shoot(page: Any, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    size = page.viewport_size
    path = ARTIFACTS / f"{name}-{size['width']}x{size['height']}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def wait_results(page: Any, query: str) -> None:
    """Until the search for ``query`` (as the status line names it) answered; it succeeded."""
    page.wait_for_function("""q => {
        const s = document.querySelector('#status').textContent;
        return s.includes(` for ${q} in `) || s.includes(`for ${q} failed`);
    }""", arg=query)
    assert " failed" not in page.inner_text("#status"), page.inner_text("#error")


def wait_pictures(page: Any) -> None:
    """Until every hit's picture is drawn (from its slide's Deep Zoom tiles or thumbnail)."""
    page.wait_for_function("[...document.querySelectorAll('.hit-canvas')].every("
                           "c => c.dataset.drawn)")
    assert page.locator(".hit-canvas[data-drawn='failed']").count() == 0
    assert page.evaluate("[...document.querySelectorAll('.hit-canvas')].every("
                         "c => c.width > 100 && c.height > 100)")


def text_search(page: Any, text: str = "polyp") -> int:
    page.fill("#q-text", text)
    page.press("#q-text", "Enter")
    wait_results(page, f"text “{text}”")
    return page.locator("#hits > li").count()


def open_first_slide_hit(page: Any) -> dict[str, Any]:
    """Open the best hit on a pyramid slide; its hit dict."""
    text_search(page)
    hit = page.evaluate("window.histoseek.state.hits.find(h => h.source_kind === 'slide')")
    page.click(f"#hits button.hit[data-rank='{hit['rank']}']")
    page.wait_for_selector("#viewer[data-state=ready] .hs-box--current")
    return hit


def screen_box(page: Any, box: dict[str, int]) -> dict[str, float]:
    """Where the level-0 ``box`` of the open slide is on the page (CSS px)."""
    return page.evaluate("""b => {
        const v = window.histoseek.viewer;
        const at = v.element.getBoundingClientRect();
        const P = OpenSeadragon.Point;
        const a = v.viewport.imageToViewerElementCoordinates(new P(b.x, b.y));
        const z = v.viewport.imageToViewerElementCoordinates(new P(b.x + b.w, b.y + b.h));
        return {x: at.left + a.x, y: at.top + a.y, width: z.x - a.x, height: z.y - a.y};
    }""", box)


def wait_overlay_at(page: Any, selector: str, box: dict[str, int], tolerance: float = 2.0
                    ) -> None:
    """Until the overlay ``selector`` covers the level-0 ``box`` (the viewer animates)."""
    page.wait_for_function("""([sel, b, tol]) => {
        const v = window.histoseek.viewer, el = document.querySelector(sel);
        if (!v || !el || !v.world.getItemCount()) return false;
        const at = v.element.getBoundingClientRect(), r = el.getBoundingClientRect();
        const P = OpenSeadragon.Point;
        const a = v.viewport.imageToViewerElementCoordinates(new P(b.x, b.y));
        const z = v.viewport.imageToViewerElementCoordinates(new P(b.x + b.w, b.y + b.h));
        return Math.abs(r.left - at.left - a.x) < tol && Math.abs(r.top - at.top - a.y) < tol
            && Math.abs(r.right - at.left - z.x) < tol && Math.abs(r.bottom - at.top - z.y) < tol;
    }""", arg=[selector, box, tolerance])


def overlaps(a: dict[str, float], b: dict[str, float]) -> float:
    """Intersection over union of two page rectangles."""
    w = min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"])
    h = min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"])
    inter = max(0.0, w) * max(0.0, h)
    return inter / (a["width"] * a["height"] + b["width"] * b["height"] - inter)


def test_keyboard_text_search_and_results(page: Any) -> None:
    for _ in range(10):  # Tab from the top of the page to the search box
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "q-text":
            break
    else:
        pytest.fail("Tab never reached the search box")
    page.keyboard.type("polyp")
    page.keyboard.press("Enter")
    wait_results(page, "text “polyp”")
    state = page.evaluate("window.histoseek.state")
    assert state["query"] == {"kind": "text", "text": "polyp"}
    assert page.locator("#hits > li").count() == len(state["hits"]) == 12
    first = page.locator("#hits > li").first
    assert "#1" in first.inner_text() and "synth-s3" in first.inner_text()
    assert "source" in first.inner_text()  # scores, names and the source id show
    wait_pictures(page)  # every hit's picture drawn
    shoot(page, "results", full_page=True)
    page.set_viewport_size(NARROW)
    page.wait_for_function("document.querySelector('.layout').getBoundingClientRect().width"
                           " <= 420")
    columns = page.evaluate("getComputedStyle(document.querySelector('.hits'))"
                            ".gridTemplateColumns.split(' ').length")
    assert columns == 2
    assert page.evaluate("document.documentElement.scrollWidth") <= 420  # no sideways scroll
    page.press("#q-text", "Enter")  # one column: a search brings its results into view
    page.wait_for_function("document.querySelector('#results').getBoundingClientRect().top"
                           " < 100")
    wait_pictures(page)
    shoot(page, "results")
    # Tab on to the first result, open it with Enter, close with Escape
    page.focus("#q-k")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('hit')"):
            break
    assert page.evaluate("document.activeElement.dataset.rank") == "1"
    page.keyboard.press("Enter")
    page.wait_for_selector("#viewer[data-state=ready]")
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="hidden")
    assert page.evaluate("document.activeElement.dataset.rank") == "1"  # focus comes back


@pytest.mark.parametrize("px", [512, 100])  # full resolution, and a level halved
def test_result_pictures_are_the_hit_boxes(page: Any, built: Built, px: int) -> None:
    """A hit's picture is its box, cut from the Deep Zoom tiles (here across 2x2 of them)."""
    import numpy as np
    from PIL import Image

    from histoseek.slides.reader import open_slide

    box = {"x": 1200, "y": 1250, "w": 300, "h": 200}  # across a block's edge: shifts show
    width, height, pixels = page.evaluate("""async ([box, px]) => {
        const { drawCrop } = await import('./static/api.js');
        const canvas = document.createElement('canvas');
        await drawCrop(canvas, 1, box, px);
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
        return [canvas.width, canvas.height, Array.from(data.data)];
    }""", [box, px])
    got = np.asarray(pixels, np.float32).reshape(height, width, 4)[..., :3]
    source = page.evaluate("window.histoseek.state.sources.get(1).path")
    assert source == str(built.slides[0])
    with open_slide(source) as slide:
        truth = slide.read_region(box["x"], box["y"], 0, (box["w"], box["h"]))
    scale = 1 if px == 512 else 2
    assert (width, height) == (box["w"] // scale, box["h"] // scale)
    if scale > 1:
        truth = np.asarray(Image.fromarray(truth).resize((width, height), Image.BILINEAR))
    # JPEG tiles and resampling differ by ~2-3 levels; a box 2 px off differs by 5
    assert np.abs(got - truth.astype(np.float32)).mean() < (4 if scale == 1 else 3)


def test_image_upload_and_drop(page: Any, built: Built) -> None:
    page.set_input_files("#q-image", str(built.spare))
    wait_results(page, f"image {built.spare.name}")
    hits = page.evaluate("window.histoseek.state.hits")
    assert len(hits) == 12 and all(h["kind"] == "tile" for h in hits)
    assert page.locator("#hits button.hit").count() == 12
    assert page.is_visible("#drop-preview")
    # an image pasted or dropped is a query too
    send_file = """async ([name, how]) => {
        const canvas = Object.assign(document.createElement('canvas'), {width: 64, height: 64});
        const g = canvas.getContext('2d');
        g.fillStyle = '#d68fb0';
        g.fillRect(0, 0, 64, 64);
        const blob = await new Promise(done => canvas.toBlob(done, 'image/png'));
        const data = new DataTransfer();
        data.items.add(new File([blob], name, {type: 'image/png'}));
        const event = how === 'drop'
            ? new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true})
            : new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true});
        document.querySelector(how === 'drop' ? '#drop' : '#q-text').dispatchEvent(event);
    }"""
    page.evaluate(send_file, ["pasted.png", "paste"])  # pasted into the page
    wait_results(page, "image pasted.png")
    page.evaluate(send_file, ["dropped.png", "drop"])
    wait_results(page, "image dropped.png")
    assert page.evaluate("window.histoseek.state.query.name") == "dropped.png"
    # the heatmap of an image query scores the slide's tiles against the same image
    rank = page.evaluate("window.histoseek.state.hits.find(h => h.source_kind === 'slide').rank")
    page.click(f"#hits button.hit[data-rank='{rank}']")
    page.wait_for_selector("#viewer[data-state=ready] .hs-box--current")
    page.click("#v-heat")
    page.wait_for_selector(".hs-heat")
    assert "similarity to image dropped.png" in page.inner_text("#v-status")


def test_viewer_draws_the_hit_box_where_the_hit_is(page: Any) -> None:
    hit = open_first_slide_hit(page)
    box = {k: hit[k] for k in ("x", "y", "w", "h")}
    selector = f".hs-box--current[data-hit-rank='{hit['rank']}']"
    wait_overlay_at(page, selector, box)
    drawn = page.locator(selector).bounding_box()
    expected = screen_box(page, box)
    assert overlaps(drawn, expected) > 0.95, (drawn, expected)
    viewer = page.locator("#osd").bounding_box()
    assert drawn["width"] > 40  # zoomed in on the match, which lies inside the view
    assert viewer["x"] <= drawn["x"] and drawn["x"] + drawn["width"] <= viewer["x"] + viewer[
        "width"]
    assert viewer["y"] <= drawn["y"] and drawn["y"] + drawn["height"] <= viewer["y"] + viewer[
        "height"]
    # every hit on this slide is boxed, and listed beside
    on_slide = page.evaluate(f"window.histoseek.state.hits.filter(h => h.source === "
                             f"{hit['source']}).map(h => h.rank)")
    drawn_ranks = page.eval_on_selector_all(".hs-box[data-part='0']",
                                            "els => els.map(e => Number(e.dataset.hitRank))")
    assert sorted(drawn_ranks) == sorted(on_slide) and len(on_slide) > 1
    assert page.locator("#v-hits .side-hit--here").count() == len(on_slide)
    page.wait_for_load_state("networkidle")
    shoot(page, "viewer")
    page.set_viewport_size(NARROW)  # the overlay follows the viewer's new size
    page.wait_for_function("document.querySelector('#osd').getBoundingClientRect().width"
                           " <= 420")
    page.click("#v-match")
    wait_overlay_at(page, selector, box)
    page.wait_for_load_state("networkidle")
    shoot(page, "viewer")


def test_heatmap_layer_covers_the_slide(page: Any) -> None:
    hit = open_first_slide_hit(page)
    page.click("#v-heat")
    page.wait_for_selector(".hs-heat")
    assert page.get_attribute("#v-heat", "aria-pressed") == "true"
    assert page.is_visible("#v-legend")
    size = page.evaluate("(s => ({w: s.x, h: s.y}))"
                         "(window.histoseek.viewer.world.getItemAt(0).source.dimensions)")
    wait_overlay_at(page, ".hs-heat", {"x": 0, "y": 0, "w": size["w"], "h": size["h"]})
    # the best tile of the slide is coloured brightest, under the hit's box
    centre = screen_box(page, {k: hit[k] for k in ("x", "y", "w", "h")})
    colour = page.evaluate("""([cx, cy]) => {
        const c = document.querySelector('.hs-heat'), r = c.getBoundingClientRect();
        const x = Math.floor((cx - r.left) / r.width * c.width);
        const y = Math.floor((cy - r.top) / r.height * c.height);
        return [...c.getContext('2d').getImageData(x, y, 1, 1).data];
    }""", [centre["x"] + centre["width"] / 2, centre["y"] + centre["height"] / 2])
    assert colour[3] == 255 and sum(colour[:3]) > 500, colour  # bright yellow, opaque
    page.fill("#v-heat-opacity", "30")
    assert page.eval_on_selector(".hs-heat", "c => c.style.opacity") == "0.3"
    page.click("#v-heat")
    page.wait_for_selector(".hs-heat", state="detached")


def test_drawing_a_region_runs_a_region_search(page: Any) -> None:
    hit = open_first_slide_hit(page)
    page.click("#v-draw")
    page.keyboard.press("Escape")  # Escape first stops drawing, the viewer stays open
    assert page.get_attribute("#v-draw", "aria-pressed") == "false"
    assert page.is_visible("#viewer") and page.is_hidden("#draw-layer")
    page.click("#v-draw")
    assert page.get_attribute("#v-draw", "aria-pressed") == "true"
    assert page.evaluate("window.histoseek.viewer.innerTracker.isTracking()") is False
    view = page.locator("#osd").bounding_box()
    start = (view["x"] + view["width"] * 0.3, view["y"] + view["height"] * 0.3)
    end = (view["x"] + view["width"] * 0.6, view["y"] + view["height"] * 0.7)
    expected = page.evaluate("""([a, b]) => {
        const v = window.histoseek.viewer, at = v.element.getBoundingClientRect();
        const f = p => v.viewport.viewerElementToImageCoordinates(
            new OpenSeadragon.Point(p[0] - at.left, p[1] - at.top));
        const p = f(a), q = f(b);
        return {x: p.x, y: p.y, w: q.x - p.x, h: q.y - p.y};
    }""", [start, end])
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=5)
    page.mouse.up()
    page.wait_for_function("window.histoseek.state.query.kind === 'region'")
    query = page.evaluate("window.histoseek.state.query")
    assert query["source"] == hit["source"]
    for key in ("x", "y", "w", "h"):
        assert abs(query[key] - expected[key]) <= 2, (query, expected)
    page.wait_for_selector(".hs-query")
    wait_overlay_at(page, ".hs-query", {k: query[k] for k in ("x", "y", "w", "h")})
    assert page.get_attribute("#v-draw", "aria-pressed") == "false"
    assert page.evaluate("window.histoseek.viewer.innerTracker.isTracking()") is True
    n = page.evaluate("window.histoseek.state.hits.length")
    assert n == 12 and page.locator("#v-hits > li").count() == n
    assert page.locator("#hits > li").count() == n  # the page's grid shows them too
    assert "hits for the region" in page.inner_text("#v-status")
    page.wait_for_load_state("networkidle")
    shoot(page, "viewer-region")
    # the keyboard's way: search the visible area
    page.focus("#v-view-search")
    page.keyboard.press("Enter")
    page.wait_for_function("w => window.histoseek.state.query.w > w", arg=query["w"])
    assert "hits for the region" in page.inner_text("#v-status")


def test_classify_shows_class_probabilities(page: Any) -> None:
    open_first_slide_hit(page)
    page.click("#v-heat")
    page.wait_for_selector(".hs-heat")
    page.click("#v-classify")
    page.wait_for_selector("#v-probs li")
    rows = page.eval_on_selector_all("#v-probs li .prob-value",
                                     "els => els.map(e => parseFloat(e.textContent))")
    assert len(rows) == 6 and abs(sum(rows) - 100) < 1  # the default EBHI classes
    assert rows == sorted(rows, reverse=True)
    verdict = page.inner_text("#v-verdict")
    assert verdict.startswith(("Predicted:", "Abstains:")) and "margin" in verdict
    assert page.locator(".hs-driver").count() > 0  # the tiles that drove it are boxed
    page.wait_for_load_state("networkidle")
    shoot(page, "viewer-heatmap-classify")


def test_a_private_service_asks_for_the_token(browser: Any, built: Built) -> None:
    with serving(built.library, private=True) as url, new_page(browser, url) as page:
        page.wait_for_function("document.querySelector('#library').textContent"
                               ".includes('private')")
        assert page.evaluate("document.activeElement.id") == "token"
        page.keyboard.type(TOKEN)
        page.keyboard.press("Enter")
        page.wait_for_selector("body[data-ready]")
        assert page.evaluate("sessionStorage.getItem('histoseek.token')") == TOKEN
        open_first_slide_hit(page)  # searches, pictures and Deep Zoom tiles carry the token
        page.wait_for_function("window.histoseek.viewer.world.getItemAt(0).getFullyLoaded()")
        wait_pictures(page)
