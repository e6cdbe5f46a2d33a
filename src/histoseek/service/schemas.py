"""Request bodies: pydantic checks types and ranges, so a bad field is a 422 naming it; what
the fields mean is checked once, by the ``Library`` method the route calls."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Scalar = str | int | float | bool
Filters = dict[str, Scalar | list[Scalar]]
SourceKey = int | str  # a source's id, or its indexed path, file name or sha256


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not ignored


class QueryOptions(_Strict):
    k: int = Field(10, ge=1, le=1000, description="number of hits")
    target: Literal["tiles", "slides", "reports"] | None = None
    level: Literal["tile", "region", "slide"] | None = None
    group: bool = Field(False, description="group tile hits by slide")
    where: Filters | None = Field(None, description="key: value (or [values]) to keep")
    exclude: Filters | None = Field(None, description="key: value (or [values]) to leave out")


class TextQuery(QueryOptions):
    text: str = Field(max_length=10_000, description="what to look for")
    expand: bool = Field(True, description="add knowledge-base synonyms")


class RegionQuery(QueryOptions):
    source: SourceKey = Field(description="an indexed slide: id, path, file name or sha256")
    x: int = Field(ge=0, description="level-0 pixels")
    y: int = Field(ge=0)
    w: int = Field(gt=0)
    h: int = Field(gt=0)
    mpp: float | None = Field(None, gt=0)
    include_query_region: bool = False


class SlideQuery(QueryOptions):
    source: SourceKey = Field(description="an indexed slide: id, path, file name or sha256")
    mpp: float | None = Field(None, gt=0)
    include_query_region: bool = False
    exhaustive: bool = False
    slide_codes: Literal["float", "binary"] = "float"


class ClassifyRequest(_Strict):
    source: SourceKey = Field(description="an indexed slide: id, path, file name or sha256")
    classes: list[str] | None = Field(None, max_length=100, description=(
        "knowledge-tree classes (ids, names or synonyms); default: the colorectal EBHI set"))
    top_k: int = Field(10, ge=1, le=1000)
    min_margin: float = Field(0.1, ge=0.0, le=1.0)
    mpp: float | None = Field(None, gt=0)


class IngestRequest(_Strict):
    paths: list[str] = Field(min_length=1, max_length=10_000, description=(
        "files or folders inside the service's --root folders (absolute, or relative to a "
        "root)"))
    labels: str | None = Field(None, description="a labels CSV inside the --root folders")
    mpp: float | None = Field(None, gt=0)
    metadata: dict[str, Scalar] | None = None


class ReportItem(BaseModel):
    model_config = ConfigDict(extra="allow")  # other keys are kept as report metadata
    text: str
    report_id: str | None = None
    source_id: str | None = None
    label: str | None = None


class ReportsRequest(_Strict):
    reports: list[ReportItem | str] = Field(min_length=1, max_length=100_000)
