"""Slide → slide search in two stages over the stored slide summaries (``index.slide_summary``).

Scoring every query tile against every indexed tile costs time in proportion to the whole
library. Instead:

1. **Coarse**: candidates from the slide vectors (cosine of the query's mean) and from the
   mosaics (each query mosaic tile votes for the slides whose mosaic tiles it finds among
   its nearest; SISH/Yottixel-style). The mosaic index is float (exact inner product) or,
   as an option, binary codes (``index.binary_codes``) in a FAISS binary index: 64 bytes
   per mosaic tile instead of 2 KB.
2. **Re-rank** the candidates by bag-to-bag similarity: for each query mosaic tile its best
   match in the candidate's mosaic, centred on that tile's mean best match over the
   candidates, then the median over the query tiles (Yottixel's "median of minimum
   distances", made query-adaptive; see ``rerank``). A hit's score is the typical
   candidate's median match plus how much better than typical this one matches. The
   matches that most set it apart (largest centred value) are the hit's region pairs:
   query box ↔ hit box, both level-0 pixels with their mpp, with their cosine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np

from histoseek.index.binary_codes import binary_codes
from histoseek.index.slide_summary import SlideSummary
from histoseek.index.store import RecordStore

SlideCodes = Literal["float", "binary"]
MIN_CANDIDATES = 32


@dataclass(frozen=True)
class Candidate:
    """A re-ranked slide: its score and its region pairs (query row, hit row, similarity)."""

    source: int
    score: float
    pairs: tuple[tuple[int, int, float], ...]


class SlideCatalogue:
    """In-memory coarse indexes over every source's mean vector and mosaic."""

    def __init__(self, store: RecordStore, dim: int, codes: SlideCodes = "float") -> None:
        means = store.summaries("mean", dim)
        mosaics = store.summaries("mosaic", dim)
        self.codes = codes
        self.bits = -(-dim // 8) * 8  # binary codes: whole bytes
        self.sources = np.fromiter(means, np.int64, len(means))
        self.means = (np.vstack([means[s].vectors for s in self.sources]) if len(means)
                      else np.zeros((0, dim), np.float32))
        owners = [np.full(len(mosaics[s]), s, np.int64) for s in self.sources if s in mosaics]
        self.mosaic_owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        vectors = (np.vstack([mosaics[s].vectors for s in self.sources if s in mosaics])
                   if owners else np.zeros((0, dim), np.float32))
        if codes == "binary":
            self.mosaic_index: faiss.Index | faiss.IndexBinary = faiss.IndexBinaryFlat(self.bits)
            if len(vectors):
                self.mosaic_index.add(binary_codes(vectors, self.bits))
        else:
            self.mosaic_index = faiss.IndexFlatIP(dim)
            if len(vectors):
                self.mosaic_index.add(np.ascontiguousarray(vectors))
        self.dim = dim

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def bytes_in_memory(self) -> int:
        """What the coarse stage keeps in RAM: slide vectors, mosaic codes, mosaic owners."""
        per_row = self.bits // 8 if self.codes == "binary" else 4 * self.dim
        return int(self.means.nbytes + self.sources.nbytes + self.mosaic_owner.nbytes
                   + self.mosaic_index.ntotal * per_row)

    def candidates(self, query_mean: np.ndarray, query_mosaic: np.ndarray, n: int,
                   allowed: np.ndarray | None) -> np.ndarray:
        """Up to about ``2n`` source ids: the top ``n`` by slide vector, and by mosaic votes."""
        if len(self.sources) == 0:
            return np.zeros(0, np.int64)
        keep = np.ones(len(self.sources), bool) if allowed is None else np.isin(
            self.sources, allowed)
        by_mean = self.means[keep] @ query_mean.reshape(-1)
        top_mean = self.sources[keep][np.argsort(-by_mean)[:n]]
        votes: dict[int, float] = {}
        if self.mosaic_index.ntotal:
            fetch = min(self.mosaic_index.ntotal, 4 * n)
            if self.codes == "binary":
                distances, rows = self.mosaic_index.search(
                    binary_codes(query_mosaic, self.bits), fetch)
                sims = np.cos(np.pi * distances / self.bits)  # SimHash: angle from Hamming
            else:
                sims, rows = self.mosaic_index.search(
                    np.ascontiguousarray(query_mosaic, np.float32), fetch)
            allowed_set = None if allowed is None else set(allowed.tolist())
            for qsims, qrows in zip(sims, rows, strict=True):
                best: dict[int, float] = {}
                for sim, row in zip(qsims.tolist(), qrows.tolist(), strict=True):
                    if row < 0:
                        continue
                    owner = int(self.mosaic_owner[row])
                    if allowed_set is not None and owner not in allowed_set:
                        continue
                    if sim > best.get(owner, -2.0):
                        best[owner] = sim
                for owner, sim in best.items():
                    votes[owner] = votes.get(owner, 0.0) + sim
        top_votes = sorted(votes, key=lambda s: -votes[s])[:n]
        return np.asarray(list(dict.fromkeys([*top_mean.tolist(), *top_votes])), np.int64)


def rerank(query: SlideSummary, candidates: dict[int, SlideSummary], pairs: int = 5
           ) -> list[Candidate]:
    """Candidates by the median, over query mosaic tiles, of each tile's best match in the
    candidate minus that tile's mean best match over all candidates.

    Yottixel ranks by the plain median of best matches; but tissue that every slide has
    (stroma, fat, background) matches every candidate almost perfectly and then decides the
    median. Centring each query tile on the candidates (query-adaptive normalisation) leaves
    only how much better than typical a candidate matches it: chosen over the plain median
    and the mean on synthetic slides from training sources (``evaluation.slide_eval``).
    """
    sources = list(candidates)
    if not sources:
        return []
    best_rows, best_sims = [], []
    for source in sources:
        sims = query.vectors @ candidates[source].vectors.T  # [query rows, candidate rows]
        best_rows.append(sims.argmax(axis=1))
        best_sims.append(sims.max(axis=1))
    best = np.asarray(best_sims)  # [candidates, query rows]
    typical = best.mean(axis=0) if len(sources) > 1 else np.zeros(best.shape[1])
    centred = best - typical
    level = float(np.median(typical))  # puts scores back on the cosine scale; same for all
    ranked = []
    for c, source in enumerate(sources):
        order = np.argsort(-centred[c])  # pairs that set it apart, not shared background
        chosen: list[tuple[int, int, float]] = []
        used: set[int] = set()
        for qi in order.tolist():
            row = int(best_rows[c][qi])
            if row in used:
                continue
            used.add(row)
            chosen.append((qi, row, float(best[c, qi])))
            if len(chosen) == pairs:
                break
        ranked.append(Candidate(source, level + float(np.median(centred[c])), tuple(chosen)))
    ranked.sort(key=lambda c: -c.score)
    return ranked
