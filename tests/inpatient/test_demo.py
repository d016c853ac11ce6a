"""The quick start's demo portal has a hospital: «Корпус 1» with wards and a profile map, the in-stay patient
in a bed and the arriving one with a date and budget; seeding twice adds nothing."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.conftest import Api
from widget_server.cli.demo import ensure_demo
from widget_server.models import Building, ExpectedArrival, InpatientStay, OutboxJob, Ward


def _counts(rt) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(model))
            for model in (Building, Ward, InpatientStay, ExpectedArrival, OutboxJob)
        )


def test_the_demo_portal_has_corpus_1_working(rt, client):
    info = ensure_demo(rt)
    first = _counts(rt)
    again = ensure_demo(rt)
    assert _counts(rt) == first and first[:4] == (1, 3, 1, 1)

    api = Api(client, again["api_key"])
    [building] = api.get("/api/v1/buildings").get_json()["buildings"]
    assert (building["name"], building["profiles"]) == ("Корпус 1", ["neurology", "low_vision"])
    assert [(w["name"], w["beds"]) for w in building["wards"]] == [("1", 2), ("2", 2), ("3", 3)]

    with rt.db.transaction() as s:
        stay_deal = s.scalar(select(InpatientStay.deal_id))
        arriving = s.scalar(select(ExpectedArrival))
        assert (arriving.building_id, arriving.budget_minor) == (building["id"], 9_000_000)
    stay = api.get(f"/api/v1/deals/{stay_deal}/stay/inpatient").get_json()
    assert (stay["building"], stay["ward"], stay["bed"], stay["status"]) == ("Корпус 1", "3", 1, "admitted")
    assert stay["representative"]["name"] == "Елена Орлова"
    ledger = api.get(f"/api/v1/deals/{stay_deal}/stay").get_json()
    assert ledger["status"] == "open"  # the ledger's demo account, not a second one

    today = api.get(f"/api/v1/deals/{stay_deal}/stay").get_json()["today"]
    occupancy = api.get(f"/api/v1/buildings/occupancy?date={today}").get_json()
    assert [(b["name"], b["days"][0]["taken"], b["days"][0]["free"]) for b in occupancy["buildings"]] == [
        ("Корпус 1", 1, 6)
    ]
    arrival = api.get(f"/api/v1/deals/{arriving.deal_id}/stay/arrival").get_json()["arrival"]
    assert (arrival["building"], arrival["budget"]) == ("Корпус 1", "90000.00")
    assert info["portal_id"] == again["portal_id"]
