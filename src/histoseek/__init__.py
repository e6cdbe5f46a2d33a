"""histoseek: a multimodal search engine for histopathology.

Slides and tiles go through ``slides`` (reading, tissue, tiling), ``encoders`` (pixels or text
to unit vectors), ``index`` (SQLite records + FAISS vectors in a library folder) and
``search`` (the ``Library`` API every front end calls).
"""

from histoseek.encoders.registry import create_encoder, list_encoders
from histoseek.errors import HistoseekError

__version__ = "0.1.0"

__all__ = ["HistoseekError", "Library", "__version__", "create_encoder", "list_encoders"]


def __getattr__(name: str) -> object:
    # Library pulls in FAISS and SQLite plumbing; import it only when asked for.
    if name == "Library":
        from histoseek.library import Library

        return Library
    raise AttributeError(name)
