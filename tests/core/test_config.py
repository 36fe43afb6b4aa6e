"""Configuration precedence: defaults < YAML < DSA_STREAM_* environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsa_stream.config import CONFIG_FORMAT_VERSION, Settings, load_settings, site_config_yaml
from dsa_stream.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("DSA_STREAM_") and key != "DSA_STREAM_CASA_DIR":
            monkeypatch.delenv(key)


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site" / "dsa-stream.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.version == CONFIG_FORMAT_VERSION
    assert s.paths.root == tmp_path
    assert s.paths.resolve("incoming") == tmp_path / "incoming"
    assert s.registry_url() == f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    assert s.logging.level == "INFO"


def test_full_precedence_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _yaml(
        tmp_path,
        "version: 1\npaths:\n  incoming: from-yaml\n  staging: st-yaml\n"
        "logging:\n  level: DEBUG\n  format: json\n",
    )
    # YAML beats defaults; relative paths are relative to the YAML's directory.
    s = load_settings(cfg)
    assert s.paths.root == cfg.parent
    assert s.paths.resolve("incoming") == cfg.parent / "from-yaml"
    assert s.logging.level == "DEBUG"
    # Environment beats YAML.
    monkeypatch.setenv("DSA_STREAM_PATHS__INCOMING", "/data/env-in")
    monkeypatch.setenv("DSA_STREAM_LOGGING__LEVEL", "WARNING")
    s = load_settings(cfg)
    assert s.paths.resolve("incoming") == Path("/data/env-in")
    assert s.paths.resolve("staging") == cfg.parent / "st-yaml"  # untouched keys stay
    assert s.logging.level == "WARNING"
    assert s.logging.format == "json"
    # Flags beat the environment.
    s = load_settings(cfg, {"paths": {"incoming": "/flag-in"}, "logging": {"level": "ERROR"}})
    assert s.paths.resolve("incoming") == Path("/flag-in")
    assert s.logging.level == "ERROR"
    assert s.logging.format == "json"


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _yaml(tmp_path, "paths:\n  products: pp\n")
    monkeypatch.setenv("DSA_STREAM_CONFIG", str(cfg))
    assert load_settings().paths.resolve("products") == cfg.parent / "pp"


def test_relative_sqlite_url_is_relative_to_root(tmp_path: Path) -> None:
    cfg = _yaml(tmp_path, "registry:\n  url: sqlite:///db/reg.sqlite3\n")
    assert load_settings(cfg).registry_url() == f"sqlite:///{cfg.parent / 'db/reg.sqlite3'}"
    cfg2 = _yaml(tmp_path, "registry:\n  url: postgresql+psycopg://u@h/db\n")
    assert load_settings(cfg2).registry_url() == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 99\n", "version 99 is not supported"),
        ("paths:\n  incomin: x\n", "incomin"),
        ("logging:\n  level: LOUD\n", "level"),
        ("- a\n- b\n", "mapping"),
        ("paths: [\n", "not valid YAML"),
    ],
)
def test_invalid_configuration_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(_yaml(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_settings_are_frozen_and_hash_is_stable(tmp_path: Path) -> None:
    cfg = _yaml(tmp_path, "paths:\n  incoming: a\n")
    s1, s2 = load_settings(cfg), load_settings(cfg)
    assert s1.config_hash() == s2.config_hash()
    assert load_settings(cfg, {"paths": {"incoming": "b"}}).config_hash() != s1.config_hash()
    with pytest.raises(Exception, match="frozen"):
        s1.version = 2  # type: ignore[misc]


def _keys(doc: object, prefix: str = "") -> set[str]:
    if not isinstance(doc, dict):
        return {prefix}
    out = {prefix} if prefix else set()
    for key, value in doc.items():
        out |= _keys(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def test_repository_default_config_is_valid_and_equals_defaults() -> None:
    import yaml

    path = REPO / "config" / "dsa-stream.yaml"
    documented = _keys(yaml.safe_load(path.read_text()))
    missing = _keys(Settings().model_dump(mode="json")) - documented
    assert not missing, f"config/dsa-stream.yaml does not document: {sorted(missing)}"
    s = load_settings(path)
    defaults = Settings().model_dump(mode="json")
    loaded = s.model_dump(mode="json")
    loaded["paths"]["root"] = defaults["paths"]["root"]
    assert loaded == defaults, "config/dsa-stream.yaml must document the defaults exactly"


def test_site_config_yaml_round_trips(tmp_path: Path) -> None:
    cfg = _yaml(tmp_path, site_config_yaml())
    s = load_settings(cfg)
    assert s.registry_url() == f"sqlite:///{cfg.parent / 'registry.sqlite3'}"
    assert s.paths.resolve("logs") == cfg.parent / "logs"
