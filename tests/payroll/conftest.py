from __future__ import annotations

import pytest

from ..reports.clinic_data import Clinic
from .staff_data import Staff


@pytest.fixture
def staff(rt, portal) -> Staff:  # type: ignore[no-untyped-def]
    return Staff(rt, portal)


@pytest.fixture
def clinic(rt, portal) -> Clinic:  # type: ignore[no-untyped-def]
    return Clinic(rt, portal)
