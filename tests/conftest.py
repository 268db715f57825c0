"""Fixtures shared by all test folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the folder of real CT samples, ``../shared/data`` beside the checkout.

    The environment variable KDBENCH_SHARED_DATA overrides the path. Tests that use the fixture
    are skipped when the folder is missing, but fail when CI is "true", so CI cannot pass
    without them.
    """
    override = os.environ.get("KDBENCH_SHARED_DATA")
    if override:
        folder = Path(override)
    else:
        folder = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not folder.is_dir():
        message = (
            f"real CT samples not found at {folder}; set KDBENCH_SHARED_DATA to the folder "
            f"that contains chd68-slices/ and chest-ct-3d/"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder
