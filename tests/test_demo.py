"""The demo's retrieval grid colours hits by class, and leaves unlabelled ones neutral."""

from __future__ import annotations

import numpy as np

from histoseek.demo import _labelled_cell
from histoseek.search.hits import Hit


class _Pixels:
    def hit_pixels(self, hit: Hit, px: int | None = None) -> np.ndarray:
        return np.zeros((px or 8, px or 8, 3), np.uint8)


def test_same_class_is_good_other_class_is_bad_unlabelled_is_neutral() -> None:
    lib = _Pixels()
    same = _labelled_cell(lib, Hit(0.9, "tile", 1, label="polyp"), "polyp")
    other = _labelled_cell(lib, Hit(0.8, "tile", 2, label="normal"), "polyp")
    slide_tile = _labelled_cell(lib, Hit(0.7, "tile", 3, slide="cmu-1-small-region"), "polyp")
    assert (same.good, other.good, slide_tile.good) == (True, False, None)
    assert slide_tile.caption == "cmu-1-small-region\n(no label)\n0.700"
    assert "None" not in slide_tile.caption
    case = _labelled_cell(lib, Hit(0.6, "tile", 4, label="high_grade_in", source_id="GT2019"),
                          "polyp")
    assert case.caption == "GT2019\nhigh-grade IN\n0.600"  # case id, label as people write it
