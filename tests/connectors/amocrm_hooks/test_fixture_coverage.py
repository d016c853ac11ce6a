"""Zulip's ALL_EVENT_TYPES check for amoCRM: every supported event has a fixture, every fixture is used by a
test, every fixture is listed in the README with its research § source, and every name says its event."""

from __future__ import annotations

import re
from pathlib import Path

from connectors.amocrm.hooks import DP_EVENTS, IGNORED_EVENTS, SUPPORTED_EVENTS

TESTS = Path(__file__).resolve().parents[2]
FIXTURES = TESTS / "fixtures" / "amocrm"
USING_TESTS = (
    TESTS / "connectors" / "amocrm_hooks" / "test_hooks.py",
    TESTS / "http" / "test_hooks_amocrm.py",
)
# A fixture is named event__detail; the event part of an account hook is entity_action (§4.2 keys).
_NAME = re.compile(r"^(?P<event>[a-z]+(?:_[a-z]+)*)__(?P<detail>[a-z0-9_]+)$")


def _fixtures(folder: str) -> list[Path]:
    return sorted(p for p in (FIXTURES / folder).iterdir() if p.suffix in (".form", ".json"))


def _event(path: Path) -> str:
    match = _NAME.match(path.stem)
    assert match, f"{path.name}: name it event__detail"
    return match["event"]


def test_every_fixture_is_named_event__detail_with_its_wire_format():
    for path in _fixtures("hooks"):
        # Account webhooks only ever arrive form-urlencoded (§4.2): a JSON fixture would test a shape amo
        # never sends.
        assert path.suffix == ".form", path.name
        _event(path)
    for path in _fixtures("dp"):
        _event(path)


def test_every_supported_account_event_has_a_fixture():
    covered = {_event(p).replace("_", ".", 1) for p in _fixtures("hooks")}
    assert set(SUPPORTED_EVENTS) - covered == set()


def test_every_supported_dp_trigger_has_a_fixture():
    covered = {_event(p) for p in _fixtures("dp")}
    assert set(DP_EVENTS.values()) - covered == set()


def test_supported_and_ignored_do_not_overlap():
    assert set(SUPPORTED_EVENTS) & IGNORED_EVENTS == set()


def test_every_fixture_is_used_by_a_test():
    source = "\n".join(path.read_text() for path in USING_TESTS if path.exists())
    unused = [p.name for p in _fixtures("hooks") + _fixtures("dp") if f'"{p.stem}"' not in source]
    assert unused == []


def test_every_fixture_is_in_the_readme_with_a_section():
    readme = (FIXTURES / "README_hooks.md").read_text()
    for path in _fixtures("hooks") + _fixtures("dp"):
        [line] = [line for line in readme.splitlines() if line.startswith(f"- `{path.name}`")]
        assert "§" in line, path.name
