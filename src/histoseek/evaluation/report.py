"""Markdown tables of evaluation results, encoders side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SKIP = {"dataset", "protocol", "encoder_version", "seconds", "prompts", "ci95"}
FAMILIES = ("R@", "P@", "mMV@", "mAP@", "MRR", "i2t_R@", "t2i_R@", "i2t_MedR", "t2i_MedR")


def _column_order(name: str) -> tuple[int, int]:
    """Group columns by metric family, then by cut-off: R@1 R@5 R@10 P@1 ..."""
    for i, family in enumerate(FAMILIES):
        if name.startswith(family):
            rest = name[len(family):]
            return i, int(rest) if rest.isdigit() else 0
    return len(FAMILIES), 0


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per encoder, one column per metric, in the order of the first encoder's."""
    if not results:
        return "(no results)\n"
    metrics = sorted((m for m in next(iter(results.values())) if m not in SKIP),
                     key=_column_order)
    head = "| encoder | " + " | ".join(metrics) + " |"
    rule = "|---|" + "---:|" * len(metrics)
    lines = [head, rule]
    for name, values in results.items():
        cells = []
        for m in metrics:
            v = values.get(m, "")
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(path: Path, title: str, results: dict[str, dict[str, Any]],
                 extra_lines: list[str] | None = None) -> Path:
    versions = ", ".join(f"{n} ({v.get('encoder_version', '?')})" for n, v in results.items())
    body = [f"# {title}", "", *(extra_lines or []), "", markdown_table(results),
            f"Encoders: {versions}.", ""]
    path.write_text("\n".join(body))
    return path
