"""widget.zip: layout, manifest against the documented schema, i18n parity, image sizes, reproducibility."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from PIL import Image

from widget_server.cli import cli
from widget_server.widget_package import build_widget_zip, package_version

SCHEMA = json.loads((Path(__file__).parent / "amocrm_manifest.schema.json").read_text())
BASE = "https://bridge.example.ru"
IMAGE_SIZES = {
    "logo_main.png": (400, 272),
    "logo_small.png": (108, 108),
    "logo.png": (130, 100),
    "logo_medium.png": (240, 84),
    "logo_min.png": (84, 84),
    "logo_dp.png": (174, 109),
}


@pytest.fixture(scope="module")
def archive() -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(build_widget_zip(BASE)))


def _keys(document: dict, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in document.items():
        name = f"{prefix}.{key}" if prefix else key
        keys |= _keys(value, name) if isinstance(value, dict) else {name}
    return keys


def test_layout_has_the_manifest_at_the_root(archive):
    names = set(archive.namelist())
    assert {"manifest.json", "script.js", "i18n/ru.json", "i18n/en.json"} <= names
    assert {f"images/{n}" for n in IMAGE_SIZES} <= names
    assert not any(name.startswith(("/", "amocrm/", "static/")) for name in names)


def test_manifest_follows_the_documented_schema(archive):
    manifest = json.loads(archive.read("manifest.json"))
    jsonschema.validate(manifest, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert manifest["widget"]["version"] == package_version()
    assert {"lcard-1", "digital_pipeline", "advanced_settings"} <= set(manifest["locations"])
    assert manifest["dp"]["webhook_url"] == f"{BASE}/hooks/amocrm/dp"


def test_every_i18n_key_the_manifest_names_exists_in_both_languages(archive):
    ru, en = (json.loads(archive.read(f"i18n/{lang}.json")) for lang in ("ru", "en"))
    assert _keys(ru) == _keys(en)
    manifest = json.loads(archive.read("manifest.json"))
    named = {manifest["widget"][k] for k in ("name", "description", "short_description")}
    named |= {field["name"] for field in manifest["dp"]["settings"].values()}
    named.add(manifest["advanced"]["title"])
    assert named <= _keys(ru)


def test_images_have_the_documented_sizes_and_weight(archive):
    for name, size in IMAGE_SIZES.items():
        data = archive.read(f"images/{name}")
        assert len(data) <= 300 * 1024
        assert Image.open(io.BytesIO(data)).size == size, name


def test_script_is_bound_to_this_deployment_and_defines_the_callbacks(archive):
    script = archive.read("script.js").decode()
    assert "{{BASE_URL}}" not in script and f"var BASE_URL = '{BASE}';" in script
    for callback in (
        "render:",
        "init:",
        "bind_actions:",
        "settings:",
        "advancedSettings:",
        "onSave:",
        "destroy:",
    ):
        assert callback in script
    assert "$authorizedAjax" in script and "$.ajax(" not in script
    assert "PANEL_URL = BASE_URL + '/static/widget/common/panel.js'" in script  # the shared panel


def test_the_zip_is_reproducible_and_refuses_a_bad_address():
    assert build_widget_zip(BASE) == build_widget_zip(BASE)
    for bad in ("http://bridge.example.ru", "ftp://x", "https://bridge.example.ru/path"):
        with pytest.raises(ValueError, match="--base-url"):
            build_widget_zip(bad)


def test_cli_writes_the_zip(tmp_path):
    output = tmp_path / "dist" / "widget.zip"
    result = CliRunner().invoke(cli, ["amocrm", "widget-zip", "--base-url", BASE, "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert zipfile.ZipFile(output).read("manifest.json")
    refused = CliRunner().invoke(
        cli, ["amocrm", "widget-zip", "--base-url", "http://x.ru", "-o", str(output)]
    )
    assert refused.exit_code == 1 and "https" in refused.output


def test_shells_preload_exactly_the_panels_first_render_graph():
    """PANEL_MODULES (and the shells' copies) = panel.js and what it imports statically; every other
    section is a dynamic import() that exists on disk."""
    import posixpath
    import re

    widget = Path(__file__).resolve().parents[2] / "static/widget"
    common = widget / "common"

    def static_graph(name: str, seen: set[str]) -> set[str]:
        if name in seen:
            return seen
        seen.add(name)
        source = (common / name).read_text("utf-8")
        for target in re.findall(r"^import\s[^;]*?['\"](\.[^'\"]+)['\"]", source, flags=re.M):
            static_graph(posixpath.normpath(posixpath.join(posixpath.dirname(name), target)), seen)
        return seen

    def listed(path: Path, name: str) -> set[str]:
        match = re.search(name + r"\s*=\s*\[([^\]]*)\]", path.read_text("utf-8"))
        assert match, (path, name)
        return set(re.findall(r"'([^']+)'", match.group(1)))

    graph = static_graph("panel.js", set())
    assert graph == {"panel.js", "core.js", "forms.js", "sections/account.js"}
    for path, name in (
        (common / "panel.js", "PANEL_MODULES"),
        (widget / "bitrix24/tab.js", "MODULES"),
        (widget / "amocrm/script.js", "MODULES"),
    ):
        assert listed(path, name) == graph, path
    lazy = re.findall(r"'\./(sections/[a-z]+\.js)'", (common / "panel.js").read_text("utf-8"))
    assert lazy and all((common / module).exists() for module in lazy)
