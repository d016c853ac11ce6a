"""amoCRM hook parsing: one test per fixture with the exact event (Zulip style), the form parser's
refusals naming the key, dedupe keys and the loop guard."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.amocrm.forms import MAX_DEPTH, FormError, encode_form, flatten_form, parse_form, split_key
from connectors.amocrm.hooks import (
    DP_SECRET_SETTING,
    ContactChanged,
    DealDeleted,
    DealRestored,
    DealUpdated,
    DpAction,
    EventBatch,
    ForeignAccount,
    dedupe_key,
    dp_account_id,
    dp_dedupe_key,
    dp_secret,
    event_names,
    is_own_echo,
    parse_account_hook,
    parse_dp_body,
    parse_dp_hook,
    redact_dp_secret,
)
from connectors.errors import AnomalousPayload, UnsupportedEvent
from connectors.types import DealCreated, DealStageChanged, StageRef

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "amocrm"
ACCOUNT = "29842716"
DP_FIXTURE_SECRET = "dp-fixture-secret-3f9c1a7e5b2d4c6a8e0f"


def hook_body(name: str) -> str:
    return (FIXTURES / "hooks" / f"{name}.form").read_text()


def dp_body(name: str) -> str:
    [path] = [p for p in (FIXTURES / "dp").iterdir() if p.stem == name]
    return path.read_text()


def hook(name: str):  # type: ignore[no-untyped-def]
    return parse_account_hook(ACCOUNT, hook_body(name))


def dp(name: str):  # type: ignore[no-untyped-def]
    return parse_dp_hook(ACCOUNT, dp_body(name))


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


# --- account webhooks: one test per fixture ---------------------------------------------------------------


def test_leads_status__moved():
    assert hook("leads_status__moved") == DealStageChanged(
        portal_external_id=ACCOUNT,
        occurred_at=at(1763888400),
        deal_id="15318175",
        stage=StageRef("8572511", "67548619"),
        previous=StageRef("8572511", "67548607"),
    )


def test_leads_status__across_pipelines():
    assert hook("leads_status__across_pipelines") == DealStageChanged(
        portal_external_id=ACCOUNT,
        occurred_at=at(1763892000),
        deal_id="15318175",
        stage=StageRef("8572600", "67548700"),
        previous=StageRef("8572511", "67548619"),
    )


def test_leads_status__two_leads():
    won = DealStageChanged(
        portal_external_id=ACCOUNT,
        occurred_at=at(1763895600),
        deal_id="15318175",
        stage=StageRef("8572511", "142"),
        previous=StageRef("8572511", "67548619"),
    )
    lost = DealStageChanged(
        portal_external_id=ACCOUNT,
        occurred_at=at(1763895601),
        deal_id="15318180",
        stage=StageRef("8572511", "143"),
        previous=StageRef("8572511", "67548607"),
    )
    assert hook("leads_status__two_leads") == EventBatch(
        portal_external_id=ACCOUNT, occurred_at=at(1763895601), events=(won, lost)
    )


def test_leads_add__with_custom_fields():
    assert hook("leads_add__with_custom_fields") == DealCreated(
        portal_external_id=ACCOUNT, occurred_at=at(1763899200), deal_id="15320001"
    )
    # The date field arrives as values[0]=<ts>, without [value] (§4.2): the parser keeps it as a string.
    form = parse_form(hook_body("leads_add__with_custom_fields"))
    date_field, select_field, multi_field = form["leads"]["add"][0]["custom_fields"]
    assert date_field["values"] == ["1764061200"]
    assert select_field["values"] == [{"value": "Консультация терапевта", "enum": "2750115"}]
    assert [v["enum"] for v in multi_field["values"]] == ["2750120", "2750121"]


def test_leads_update__price():
    assert hook("leads_update__price") == DealUpdated(
        portal_external_id=ACCOUNT,
        occurred_at=at(1763902800),
        deal_id="15318175",
        stage=StageRef("8572511", "67548619"),
        responsible_user_id="8123401",
        fields={"1118164": "5000"},
    )


def test_custom_field_values_keep_dates_as_strings_and_several_values_as_a_tuple():
    # The add fixture's fields, read through the update parser (same lead shape, §4.2).
    body = hook_body("leads_add__with_custom_fields").replace("leads%5Badd%5D", "leads%5Bupdate%5D")
    event = parse_account_hook(ACCOUNT, body)
    assert isinstance(event, DealUpdated)
    assert event.fields == {
        "1118170": "1764061200",
        "1118171": "Консультация терапевта",
        "1118172": ("Терапия", "Кардиология"),
    }


def test_leads_responsible__changed():
    assert hook("leads_responsible__changed") == DealUpdated(
        portal_external_id=ACCOUNT,
        occurred_at=at(1763906400),
        deal_id="15318175",
        stage=StageRef("8572511", "67548619"),
        responsible_user_id="8123405",
    )


def test_leads_delete__one():
    assert hook("leads_delete__one") == DealDeleted(
        portal_external_id=ACCOUNT, occurred_at=None, deal_id="15318180"
    )


def test_leads_restore__one():
    assert hook("leads_restore__one") == DealRestored(
        portal_external_id=ACCOUNT, occurred_at=at(1763910000), deal_id="15318180"
    )


def test_contacts_add__with_phone():
    assert hook("contacts_add__with_phone") == ContactChanged(
        portal_external_id=ACCOUNT,
        occurred_at=at(1763899200),
        contact_id="31557201",
        change="added",
        phones=("+7 (916) 123-45-67",),
    )


def test_contacts_update__email():
    assert hook("contacts_update__email") == ContactChanged(
        portal_external_id=ACCOUNT,
        occurred_at=at(1763913600),
        contact_id="31557201",
        change="updated",
        phones=("+7 (916) 123-45-67",),
        emails=("anna@example.ru",),
    )


def test_contacts_delete__one():
    assert hook("contacts_delete__one") == ContactChanged(
        portal_external_id=ACCOUNT, occurred_at=None, contact_id="31557201", change="deleted"
    )


def test_contacts_add__company_is_ignored():
    assert hook("contacts_add__company") is None
    assert event_names(parse_form(hook_body("contacts_add__company"))) == ("companies.add",)


def test_unsorted_add__ignored():
    assert hook("unsorted_add__ignored") is None


def test_customers_add__unsupported():
    with pytest.raises(UnsupportedEvent) as caught:
        hook("customers_add__unsupported")
    assert caught.value.event_type == "customers.add"


# --- account webhooks: refusals ---------------------------------------------------------------------------


def test_another_accounts_body_is_anomalous():
    with pytest.raises(ForeignAccount, match=r"account\[id\]: 29842716"):
        parse_account_hook("1312313", hook_body("leads_status__moved"))
    assert issubclass(ForeignAccount, AnomalousPayload)


def _pairs(name: str) -> list[tuple[str, str]]:
    return flatten_form(parse_form(hook_body(name)))


def _without(name: str, key: str) -> str:
    pairs = _pairs(name)
    assert key in dict(pairs)
    return urlencode([(k, v) for k, v in pairs if k != key])


def _replaced(name: str, key: str, value: str) -> str:
    return urlencode([(k, value if k == key else v) for k, v in _pairs(name)])


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (_without("leads_status__moved", "leads[status][0][status_id]"), "leads[status][0][status_id]"),
        (_without("leads_update__price", "leads[update][0][id]"), "leads[update][0][id]"),
        (_replaced("leads_update__price", "leads[update][0][id]", "15318175abc"), "leads[update][0][id]"),
        (
            _replaced("leads_update__price", "leads[update][0][updated_at]", "2025-11-23"),
            "leads[update][0][updated_at]",
        ),
        (
            _without("leads_status__moved", "leads[status][0][custom_fields][0][id]"),
            "leads[status][0][custom_fields][0][id]",
        ),
        (_replaced("contacts_add__with_phone", "contacts[add][0][type]", "lead"), "contacts[add][0][type]"),
        (_without("leads_status__moved", "account[id]"), "account[id]"),
        (_without("leads_status__moved", "account[subdomain]"), "account[subdomain]"),
        ("account%5Bid%5D=29842716&account%5Bsubdomain%5D=clinic", "body"),
        ("leads=1&account%5Bid%5D=29842716&account%5Bsubdomain%5D=clinic", "leads"),
        ("leads%5Bstatus%5D=1&account%5Bid%5D=29842716&account%5Bsubdomain%5D=clinic", "leads[status]"),
        (
            "leads%5Bstatus%5D%5Bid%5D=1&account%5Bid%5D=29842716&account%5Bsubdomain%5D=clinic",
            "leads[status]",
        ),
        (
            "leads%5Bstatus%5D%5B0%5D=1&account%5Bid%5D=29842716&account%5Bsubdomain%5D=clinic",
            "leads[status][0]",
        ),
        ("account=29842716", "account"),
        ('{"leads": {}}', "body"),
    ],
)
def test_a_malformed_body_names_the_key(body, key):
    with pytest.raises(FormError) as caught:
        parse_account_hook(ACCOUNT, body)
    assert caught.value.key == key


def test_an_unsupported_item_beside_supported_ones_is_dropped_and_logged(caplog):
    pairs = [
        *_pairs("leads_status__moved"),
        ("customers[add][0][id]", "880011"),
        ("customers[add][0][updated_at]", "1763920800"),
    ]
    with caplog.at_level(logging.WARNING, logger="connectors.amocrm.hooks"):
        event = parse_account_hook(ACCOUNT, urlencode(pairs))
    assert event == hook("leads_status__moved")
    assert "customers.add" in caplog.text


def test_ignored_items_beside_a_supported_one_leave_just_that_one():
    pairs = [
        *_pairs("leads_update__price"),
        ("unsorted[add][0][uid]", "x-1"),
        ("unsorted[add][0][pipeline_id]", "8572511"),
    ]
    assert parse_account_hook(ACCOUNT, urlencode(pairs)) == hook("leads_update__price")


def test_empty_optional_ids_mean_absent():
    body = _replaced("leads_update__price", "leads[update][0][responsible_user_id]", "")
    event = parse_account_hook(ACCOUNT, body)
    assert isinstance(event, DealUpdated) and event.responsible_user_id is None


# --- dedupe keys ------------------------------------------------------------------------------------------


def test_dedupe_key_is_entity_action_id_updated_at():
    assert (
        dedupe_key(parse_form(hook_body("leads_status__moved"))) == "amocrm:leads.status:15318175:1763888400"
    )


def test_a_retry_has_the_same_key_and_a_later_change_another():
    first = dedupe_key(parse_form(hook_body("leads_update__price")))
    assert dedupe_key(parse_form(hook_body("leads_update__price"))) == first
    later = _replaced("leads_update__price", "leads[update][0][updated_at]", "1763902801")
    assert dedupe_key(parse_form(later)) != first


def test_a_body_with_several_items_gets_one_hashed_key_independent_of_order():
    form = parse_form(hook_body("leads_status__two_leads"))
    key = dedupe_key(form)
    assert key.startswith("amocrm:sha256:") and len(key) < 255
    form["leads"]["status"].reverse()
    assert dedupe_key(form) == key
    form["leads"]["status"][0]["updated_at"] = "1763899999"
    assert dedupe_key(form) != key


def test_a_delete_without_timestamps_is_keyed_by_its_content():
    key = dedupe_key(parse_form(hook_body("leads_delete__one")))
    assert key.startswith("amocrm:leads.delete:15318180:h")
    other = dedupe_key(parse_form(_replaced("leads_delete__one", "leads[delete][0][status_id]", "142")))
    assert other != key


# --- loop guard -------------------------------------------------------------------------------------------


def test_is_own_echo():
    recent = {1763888400, "1763888460"}
    assert is_own_echo("1763888400", recent)
    assert is_own_echo(1763888460, recent)
    assert not is_own_echo("1763888401", recent)
    assert not is_own_echo(None, recent)
    assert not is_own_echo("", {""})


# --- Digital Pipeline: one test per fixture ---------------------------------------------------------------


def test_lead_added__json():
    assert dp("lead_added__json") == DpAction(
        portal_external_id=ACCOUNT,
        occurred_at=at(1763899200),
        deal_id="15320001",
        stage=StageRef("8572511", "67548607"),
        trigger="lead_added",
        settings={"action": "create_visit_request"},
    )


def test_lead_status_changed__form():
    assert dp("lead_status_changed__form") == DpAction(
        portal_external_id=ACCOUNT,
        occurred_at=at(1763888400),
        deal_id="15318175",
        stage=StageRef("8572511", "67548619"),
        trigger="lead_status_changed",
        settings={"action": "charge_deposit", "amount": "5000"},
    )


def test_lead_appeared_in_status__json():
    assert dp("lead_appeared_in_status__json") == DpAction(
        portal_external_id=ACCOUNT,
        occurred_at=at(1763892000),
        deal_id="15318175",
        stage=StageRef("8572511", "67548620"),
        trigger="lead_appeared_in_status",
        settings={"action": "charge_deposit", "amount": "5000"},
    )


def test_lead_appeared_in_status__went_from_trigger():
    assert dp("lead_appeared_in_status__went_from_trigger") is None


def test_mail_in__unsupported():
    with pytest.raises(UnsupportedEvent) as caught:
        dp("mail_in__unsupported")
    assert caught.value.event_type == "dp.mail_in"


# --- Digital Pipeline: both encodings, secret, refusals ---------------------------------------------------


def test_the_form_reading_of_a_dp_hook_gives_the_same_event_as_json():
    as_form = encode_form(parse_dp_body(dp_body("lead_appeared_in_status__json")))
    assert parse_dp_hook(ACCOUNT, as_form) == dp("lead_appeared_in_status__json")


def test_dp_secret_account_and_dedupe_key():
    tree = parse_dp_body(dp_body("lead_status_changed__form"))
    assert dp_secret(tree) == DP_FIXTURE_SECRET
    assert dp_account_id(tree) == ACCOUNT
    assert dp_dedupe_key(tree) == "amocrm_dp:14:15318175:67548619:1763888400"
    assert dp_secret(parse_dp_body('{"account_id": 1}')) is None


@pytest.mark.parametrize("name", ["lead_added__json", "lead_status_changed__form"])
def test_the_stored_dp_body_has_no_secret_and_still_parses(name):
    redacted = redact_dp_secret(dp_body(name))
    assert DP_FIXTURE_SECRET not in redacted
    assert dp_secret(parse_dp_body(redacted)) == "[redacted]"
    assert parse_dp_hook(ACCOUNT, redacted) == dp(name)
    assert redact_dp_secret('{"account_id": 1}') == '{"account_id": 1}'


def test_a_dp_hook_for_another_account_is_anomalous():
    with pytest.raises(ForeignAccount):
        parse_dp_hook("1312313", dp_body("lead_added__json"))


def test_a_customer_dp_hook_is_unsupported():
    body = dp_body("lead_added__json").replace('"element_type": 2', '"element_type": 12')
    with pytest.raises(UnsupportedEvent, match="element_type_12"):
        parse_dp_hook(ACCOUNT, body)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('{"event": {"type": 15}}', "account_id"),
        ('{"account_id": "x"}', "account_id"),
        ('{"account_id": 29842716}', "event[type]"),
        ('{"account_id": 29842716, "event": {"type": "fifteen"}}', "event[type]"),
        ('{"account_id": 29842716, "event": {"type": 15, "time": 1}}', "event[data]"),
        (
            '{"account_id": 29842716, "event": {"type": 15, "time": 1, "data": {"id": 1}}}',
            "event[data][pipeline_id]",
        ),
        ('{"account_id": 29842716, "event": {"type": 15, "data": "x", "time": 1}}', "event[data]"),
        ('{"account_id": 29842716, "event": ', "body"),
        ("event%5Btype%5D=15&event%5Btype%5D%5Bx%5D=1", "event[type][x]"),
    ],
)
def test_a_malformed_dp_hook_names_the_key(body, key):
    with pytest.raises(FormError) as caught:
        parse_dp_hook(ACCOUNT, body)
    assert caught.value.key == key


def test_the_secret_setting_is_not_passed_on():
    event = dp("lead_added__json")
    assert isinstance(event, DpAction) and DP_SECRET_SETTING not in event.settings


# --- the form parser --------------------------------------------------------------------------------------


def test_bracket_keys_become_nested_dicts_and_lists_in_index_order():
    body = "a%5B1%5D%5Bx%5D=second&a%5B0%5D%5Bx%5D=first&b%5Bc%5D=%D0%B4%D0%B0+%D0%BD%D0%B5%D1%82&d="
    assert parse_form(body) == {"a": [{"x": "first"}, {"x": "second"}], "b": {"c": "да нет"}, "d": ""}
    assert parse_form("") == {}


def test_unencoded_brackets_parse_the_same():
    assert parse_form("leads[status][0][id]=1") == {"leads": {"status": [{"id": "1"}]}}


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("leads[status=1", "leads[status"),
        ("leads]status[=1", "leads]status["),
        ("leads[status]x=1", "leads[status]x"),
        ("[status]=1", "[status]"),
        ("leads[[0]]=1", "leads[[0]]"),
        ("leads[]=1", "leads[]"),
        ("a[0]=1&a[x]=2", "a[x]"),
        ("a[x]=1&a[0]=2", "a[x]"),
        ("a[0]=1&a[2]=2", "a[1]"),
        ("a[1]=1", "a[0]"),
        ("a[01]=1&a[0]=2", "a[01]"),
        ("a=1&a[b]=2", "a[b]"),
        ("a[b]=2&a=1", "a"),
        ("a[b]=1&a[b]=2", "a[b]"),
        ("0=1", "0"),
        ("=1", "body"),
        ("a%5Bb%5D%0A=1", "a[b]\n"),
        ("a=1&b", "body"),
        ("a=%FF", "body"),
        ("a" + "[x]" * MAX_DEPTH + "=1", "a" + "[x]" * MAX_DEPTH),
    ],
)
def test_malformed_keys_are_refused_naming_the_key(body, key):
    with pytest.raises(FormError) as caught:
        parse_form(body)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")


def test_too_many_fields_are_refused():
    with pytest.raises(FormError, match="body"):
        parse_form("&".join(f"f{i}=1" for i in range(6000)))


def test_a_newline_is_part_of_a_name_never_an_index():
    assert parse_form("a%5B0%0A%5D=1") == {"a": {"0\n": "1"}}


def test_split_key():
    assert split_key("contacts[add][0][custom_fields][0][values][0][value]") == (
        "contacts",
        "add",
        "0",
        "custom_fields",
        "0",
        "values",
        "0",
        "value",
    )


def test_every_fixture_round_trips_through_the_parser():
    for path in sorted((FIXTURES / "hooks").glob("*.form")):
        tree = parse_form(path.read_text())
        assert parse_form(encode_form(tree)) == tree, path.name


_NAMES = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="[]"), min_size=1, max_size=8
).filter(lambda s: not s.isdigit())
_VALUES = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


def _nodes(depth: int) -> st.SearchStrategy:
    if depth == 0:
        return _VALUES
    child = st.deferred(lambda: _nodes(depth - 1))
    return st.one_of(
        _VALUES,
        st.dictionaries(_NAMES, child, min_size=1, max_size=3),
        st.lists(child, min_size=1, max_size=3),
    )


@settings(database=None, max_examples=200, deadline=None)
@given(st.dictionaries(_NAMES, _nodes(MAX_DEPTH - 2), max_size=4))
def test_encode_then_parse_round_trips(tree):
    assert parse_form(encode_form(tree)) == tree
