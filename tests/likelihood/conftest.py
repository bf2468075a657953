"""Fixtures of the likelihood tests."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _small_matrices(one_thread):
    """Small matrices: extra intra-op threads only add contention."""
    yield
