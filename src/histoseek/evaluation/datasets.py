"""Labelled image sets for evaluation: ``labels.csv`` (``path,label,source_id[,...]``) or an
ImageFolder (``DIR/<class>/<file>``, no source ids)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from histoseek.errors import InputError
from histoseek.slides.reader import IMAGE_SUFFIXES


@dataclass(frozen=True)
class Dataset:
    """Paths with labels and, when known, the source (patient/case) each image comes from."""

    name: str
    root: Path
    paths: tuple[Path, ...]
    labels: np.ndarray  # [n] str
    source_ids: np.ndarray | None  # [n] str, or None when the data set has none
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels.tolist()))

    def subset(self, indices: np.ndarray, name: str | None = None) -> Dataset:
        idx = np.asarray(indices, dtype=int)
        return Dataset(
            name=name or self.name, root=self.root,
            paths=tuple(self.paths[i] for i in idx), labels=self.labels[idx],
            source_ids=None if self.source_ids is None else self.source_ids[idx],
            extra={k: v[idx] for k, v in self.extra.items()},
        )


def load_dataset(path: str | Path) -> Dataset:
    """Read a ``labels.csv`` (or a folder holding one), else treat the folder as ImageFolder."""
    path = Path(path)
    csv_path = path if path.suffix.lower() == ".csv" else path / "labels.csv"
    if csv_path.is_file():
        return _from_csv(csv_path)
    if not path.is_dir():
        raise InputError(f"{path}: no such data set (want a folder or a labels.csv)")
    return _from_image_folder(path)


def _from_csv(csv_path: Path) -> Dataset:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        missing = [c for c in ("path", "label") if c not in fields]
        if missing:
            raise InputError(f"{csv_path}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    if not rows:
        raise InputError(f"{csv_path}: no rows")
    root = csv_path.parent.resolve()
    paths = tuple((root / r["path"]).resolve() for r in rows)
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise InputError(f"{csv_path}: {len(absent)} listed files are missing, e.g. {absent[0]}")
    has_source = "source_id" in fields and all(r.get("source_id") for r in rows)
    extra = {c: np.array([r[c] for r in rows]) for c in fields
             if c not in ("path", "label", "source_id")}
    return Dataset(
        name=root.name, root=root, paths=paths, labels=np.array([r["label"] for r in rows]),
        source_ids=np.array([r["source_id"] for r in rows]) if has_source else None, extra=extra,
    )


def _from_image_folder(root: Path) -> Dataset:
    paths, labels = [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(class_dir.rglob("*")):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(file.resolve())
                labels.append(class_dir.name)
    if not paths:
        raise InputError(f"{root}: no images found in class folders (DIR/<class>/<file>)")
    return Dataset(name=root.name, root=root.resolve(), paths=tuple(paths),
                   labels=np.array(labels),
                   source_ids=None)
