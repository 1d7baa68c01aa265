"""Shared test set-up: every test session trains into its own empty model cache."""

import atexit
import shutil
import tempfile

# No unit test reads a model that an earlier run (or a reader's own notebooks)
# left in ~/.cache/aigc_helpers. Notebooks run under nbval in their own kernels
# and use the cache the Makefile sets. The cache is removed when the session ends.
_unit_cache = tempfile.mkdtemp(prefix="aigc-test-cache-")
atexit.register(shutil.rmtree, _unit_cache, ignore_errors=True)

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch, request):
    """Unit tests use a session-wide temporary cache (notebook items keep theirs)."""
    if request.node.fspath.ext == ".py":
        monkeypatch.setenv("AIGC_CACHE", _unit_cache)
    yield
