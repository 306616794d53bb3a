"""The generated configuration reference is current, and every option has a description."""

from __future__ import annotations

from pathlib import Path

from authgate.config import Settings, settings_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_generated_from_settings() -> None:
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == settings_markdown(), (
        "docs/configuration.md is stale: run `authgate settings --markdown > docs/configuration.md`"
    )


def test_every_option_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"AUTHGATE_{name.upper()} has no description"
        assert f"`AUTHGATE_{name.upper()}`" in settings_markdown()
