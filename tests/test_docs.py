"""The documentation says what the code does: every setting is described (the site's table is generated from
the descriptions), .env.example names every variable, README stays short and its links lead somewhere."""

from __future__ import annotations

import importlib.util
import re

import pytest

from bot.settings import BotSettings
from runtime.settings import PROJECT_ROOT, RuntimeSettings

SETTINGS = (BotSettings, RuntimeSettings)


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", PROJECT_ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("settings_class", SETTINGS, ids=lambda c: c.__name__)
def test_every_setting_has_a_description(settings_class):
    missing = [name for name, field in settings_class.model_fields.items() if not (field.description or "").strip()]
    assert missing == [], f"{settings_class.__name__}: describe {', '.join(missing)} (Field(description=...))"


def test_the_generated_settings_table_has_every_variable_and_default():
    table = _hooks().settings_table()
    for settings_class in SETTINGS:
        prefix = settings_class.model_config["env_prefix"]
        for name, field in settings_class.model_fields.items():
            variable = (field.validation_alias.choices[0] if field.validation_alias else f"{prefix}{name}".upper())
            [row] = [line for line in table.splitlines() if line.startswith(f"| `{variable}`")]
            assert field.description.split(" ")[0] in row
    assert "| `SELFIE_BOT_WEBHOOK_PORT` | `8080` |" in table
    assert "| `SELFIE_BOT_ENGINES` | `tvm-tuned,tvm-default,litert` |" in table
    assert "| `TELEGRAM_BOT_TOKEN` or `SELFIE_BOT_TOKEN` | required |" in table
    assert str(PROJECT_ROOT) not in table  # defaults as a reader's checkout has them


def test_env_example_names_every_variable():
    text = (PROJECT_ROOT / ".env.example").read_text()
    for settings_class in SETTINGS:
        prefix = settings_class.model_config["env_prefix"]
        for name, field in settings_class.model_fields.items():
            variable = field.validation_alias.choices[0] if field.validation_alias else f"{prefix}{name}".upper()
            assert re.search(rf"\b{variable}=", text), f".env.example does not mention {variable}"


def test_readme_is_short_and_its_local_links_exist():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert len(local) > 10
    for link in local:
        assert (PROJECT_ROOT / link).exists(), f"README links to {link}, which does not exist"


def test_readme_has_no_dated_narrative():
    """Dated notes belong in docs/results-history.md (a run's date in the headline table is data, not prose)."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    prose = re.sub(r"<!-- headline table:.*?<!-- end of headline table -->", "", readme, flags=re.S)
    assert not re.search(r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{1,2}\b", prose)
    assert not re.search(r"\b(this|previous|later|earlier) session\b", prose)
