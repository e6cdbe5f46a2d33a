"""Getting sources into a library: find inputs, read and tile them, encode, commit.

``discovery`` turns paths and CSVs into jobs, ``stream`` reads and encodes them in full
batches, ``files`` and ``reports`` are the bodies of ``Library.add`` and ``add_reports``.
"""
