from __future__ import annotations

import pytest

from .clinic_data import Clinic


@pytest.fixture
def clinic(rt, portal) -> Clinic:  # type: ignore[no-untyped-def]
    return Clinic(rt, portal)
