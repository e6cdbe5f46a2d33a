"""Child of ``bench_cli_latency.py``: one ``histoseek search`` in this process, timed by phase.

Runs the real CLI entry point (``histoseek.cli.main``) with ``time.perf_counter`` spans
wrapped around the calls a search makes (no cProfile: its overhead would swamp the small
phases), and writes the spans as JSON for the parent to tabulate. Works on the current
layout (``histoseek.library``) and the older one (``histoseek.search.library``).

    python benchmarks/cli_phases.py SPAWN_WALL_TIME OUT.json LIB --image TILE -k 5

``SPAWN_WALL_TIME`` is the parent's ``time.time()`` just before it started this process, so
interpreter start-up can be measured across the process boundary.
"""

import time

T0_WALL, T0 = time.time(), time.perf_counter()  # first thing: when this script starts running

import builtins  # noqa: E402  (after the start-up mark on purpose)
import functools  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

# first-time imports of these packages are recorded as spans ("of which imports")
WATCHED = {"torch", "torchvision", "timm", "transformers", "sentence_transformers", "faiss",
           "numpy", "scipy", "skimage", "sklearn", "PIL", "typer", "rich", "safetensors",
           "tqdm", "yaml", "matplotlib", "pandas", "open_clip", "tiffslide", "openslide",
           "tifffile", "huggingface_hub", "tokenizers", "sqlite3", "pydantic"}

spans: list[dict] = []  # {label, kind, start, end, phase: index of the enclosing phase span}
_phase_stack: list[int] = []


class _Span:
    """A timed region; ``kind`` "phase" spans nest, others are annotated with their phase."""

    def __init__(self, label: str, kind: str) -> None:
        self.label, self.kind = label, kind

    def __enter__(self) -> "_Span":
        self.index = len(spans)
        spans.append({"label": self.label, "kind": self.kind, "start": time.perf_counter(),
                      "end": None, "phase": _phase_stack[-1] if _phase_stack else None})
        if self.kind == "phase":
            _phase_stack.append(self.index)
        return self

    def __exit__(self, *exc: object) -> None:
        spans[self.index]["end"] = time.perf_counter()
        if self.kind == "phase":
            _phase_stack.pop()


def timed(label: str, kind: str, fn):  # type: ignore[no-untyped-def]
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        with _Span(label, kind):
            return fn(*args, **kwargs)
    return wrapper


# -- patches applied when a module appears (so nothing is imported early to patch it) ------
PENDING: dict[str, list[tuple[str, str, str]]] = {
    "histoseek.hashing": [("sha256_file", "sha256 of a file", "note")],
    "histoseek.models.factory": [("create_model", "build model + load weights", "note"),
                                 ("load_state", "read weights file", "note")],
    "histoseek.knowledge.tree": [("load_tree", "knowledge tree load", "note")],
}


def _patch_pending() -> None:
    """Patch a pending module once its body has run (it is in sys.modules from its start)."""
    for name in [n for n in PENDING if n in sys.modules]:
        module = sys.modules[name]
        if getattr(getattr(module, "__spec__", None), "_initializing", False):
            continue
        for attr, label, kind in PENDING.pop(name):
            if hasattr(module, attr):
                _replace_everywhere(getattr(module, attr), timed(label, kind,
                                                                 getattr(module, attr)))


def _replace_everywhere(old, new) -> None:  # type: ignore[no-untyped-def]
    """Point every loaded histoseek module's reference to ``old`` at ``new``."""
    for name, module in list(sys.modules.items()):
        if name.startswith("histoseek") and module is not None:
            for attr, value in list(vars(module).items()):
                if value is old:
                    setattr(module, attr, new)


_real_import = builtins.__import__


def _import(name, globals=None, locals=None, fromlist=(), level=0):  # type: ignore[no-untyped-def]
    top = name.partition(".")[0]
    if level == 0 and top in WATCHED and top not in sys.modules:
        with _Span(f"import {top}", "import"):
            module = _real_import(name, globals, locals, fromlist, level)
    else:
        module = _real_import(name, globals, locals, fromlist, level)
    if PENDING:
        _patch_pending()
    return module


def _wrap_encoder_factory(registry) -> None:  # type: ignore[no-untyped-def]
    """Time encoder creation by tower, and each created encoder's encode calls."""
    real = registry.create_encoder

    def create_encoder(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        entry = len(spans)
        with _Span(f"create encoder {name}", "phase"):
            enc = real(name, *args, **kwargs)
        text_only = tuple(enc.info.modalities) == ("text",)
        spans[entry]["label"] = "text encoder creation" if text_only else (
            "image encoder creation")
        for method in ("encode_images", "encode_texts"):
            setattr(enc, method, timed("query encode", "phase", getattr(enc, method)))
        return enc

    _replace_everywhere(real, create_encoder)
    registry.create_encoder = create_encoder


def main() -> None:
    spawn_wall, out, args = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
    marks = {"setup_start": T0}
    builtins.__import__ = _import
    marks["setup_end"] = time.perf_counter()

    with _Span("import histoseek.cli", "phase"):
        import histoseek.cli as cli
    with _Span("import Library module", "phase"):
        try:
            import histoseek.library as library_module
        except ImportError:  # the layout before the engine's second pass
            import histoseek.search.library as library_module
    t = time.perf_counter()
    import histoseek.encoders.registry as registry  # loaded already by the Library module
    import histoseek.index.vectors as vectors

    _wrap_encoder_factory(registry)
    lib_cls = library_module.Library
    for attr, label, kind in (("open", "Library.open", "phase"),
                              ("search", "search (rank, rows, hits)", "phase"),
                              ("close", "close", "phase")):
        raw = vars(lib_cls)[attr]
        fn = timed(label, kind, raw.__func__ if isinstance(raw, classmethod) else raw)
        setattr(lib_cls, attr, classmethod(fn) if isinstance(raw, classmethod) else fn)
    vectors.FaissIndex.load = classmethod(timed("read .faiss file", "note",
                                                vectors.FaissIndex.load.__func__))
    try:
        import histoseek.index.space_indexes as space_indexes

        space_indexes.SpaceIndexes._load = timed("FAISS index load", "phase",
                                                 space_indexes.SpaceIndexes._load)
    except ImportError:  # older layout: Library._index loads (and caches) a space
        lib_cls._index = timed("FAISS index load", "phase", lib_cls._index)
    _patch_pending()
    marks["instrument"] = time.perf_counter() - t

    sys.argv = ["histoseek", *args]
    marks["app_start"] = time.perf_counter()
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    marks["app_end"] = time.perf_counter()
    sys.stdout.flush()
    end_wall = time.time()
    with open(out, "w") as fh:
        json.dump({"t0": T0, "t0_wall": T0_WALL, "spawn_wall": spawn_wall,
                   "end_wall": end_wall, "marks": marks, "spans": spans, "exit_code": code,
                   "histoseek_file": cli.__file__}, fh)
    sys.exit(code)


if __name__ == "__main__":
    main()
