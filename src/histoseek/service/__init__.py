"""The HTTP service (``histoseek serve``): one process keeps a library's encoder and index warm.

Each endpoint calls the same ``Library`` method as the matching CLI verb. This package imports
FastAPI, so only ``histoseek serve`` (or a script) loads it: ``import histoseek`` and the
other CLI verbs never do. Install with ``pip install -e ".[serve]"``.
"""
