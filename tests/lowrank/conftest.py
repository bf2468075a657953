"""Fixtures of the lowrank tests."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _tiny_problems(one_thread):
    """These problems are tiny; one intra-op thread avoids >10x slow-downs on a busy shared CPU."""
    yield
