"""The histoseek error tree.

Every user mistake (bad file, missing mpp, unknown encoder, wrong library) raises a
``HistoseekError`` whose message names the file, the problem and the next step. The CLI
catches this one root and prints a single line; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class HistoseekError(Exception):
    """Root of every error histoseek raises on purpose."""


class SlideReadError(HistoseekError):
    """A slide or image file cannot be opened or read."""


class UnsupportedImageError(SlideReadError):
    """The file opens but its pixels are not 8-bit RGB(A) H&E-like data."""


class MissingMppError(HistoseekError):
    """A file has no microns-per-pixel and none was given."""


class UnknownEncoderError(HistoseekError):
    """No encoder of that name is registered."""


class WeightsNotFoundError(HistoseekError):
    """Weights for an encoder cannot be found or loaded."""


class NoTextTowerError(HistoseekError):
    """The encoder cannot embed text, so a cross-modal query cannot run."""


class LibraryError(HistoseekError):
    """A library folder is missing, corrupt or used wrongly."""


class LibraryMismatchError(LibraryError):
    """Vectors or settings from another encoder were offered to a library."""


class EmptyQueryError(HistoseekError):
    """A query had nothing to search with (empty text, no image)."""


class InputError(HistoseekError):
    """A user-supplied value (CSV, filter, region) is malformed."""
