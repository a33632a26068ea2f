"""MkDocs hooks (mkdocs.yml `hooks:`): what the pages show that the code or the saved data already says.

- the settings table, from the pydantic settings classes (bot/settings.py, runtime/settings.py);
- the headline table, copied from README (where `python -m benchmark.headline` renders it);
- the committed results pages and their figures (results/), served beside the docs, so the pages link
  to them as `../results/...`, a path that works on the repository's web view too.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_SUFFIXES = (".md", ".png")
SETTINGS_MARK = "<!-- settings table -->"
HEADLINE_MARK = "<!-- headline table -->"


def _default(field) -> str:
    from pydantic_core import PydanticUndefined

    from runtime.settings import PROJECT_ROOT

    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None or value is PydanticUndefined:
        return "unset"
    if hasattr(value, "get_secret_value"):
        return "(secret)"
    text = ",".join(value) if isinstance(value, list) else str(value)
    # Paths as a reader's machine would have them, not the build machine's.
    text = text.replace(str(PROJECT_ROOT), ".").replace(str(Path.home()), "~")
    return f"`{text}`"


def _variables(name: str, field, prefix: str) -> str:
    aliases = getattr(field.validation_alias, "choices", None)
    names = list(aliases) if aliases else [f"{prefix}{name}".upper()]
    return " or ".join(f"`{n}`" for n in names)


def settings_rows(settings_class) -> list[tuple[str, str, str]]:
    """(variables, default, description) of every field of a pydantic-settings class."""
    prefix = settings_class.model_config.get("env_prefix", "")
    return [(_variables(name, field, prefix), _default(field), field.description or "")
            for name, field in settings_class.model_fields.items()]


def _cell(text: str) -> str:
    """A description as a table cell: no column breaks, and <placeholders> shown, not taken for HTML tags."""
    return text.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;")


def settings_table() -> str:
    from bot.settings import BotSettings
    from runtime.settings import RuntimeSettings

    parts = []
    for title, cls in (("Bot (`bot/settings.py`)", BotSettings), ("Runtime, also read by the CLI "
                                                                   "(`runtime/settings.py`)", RuntimeSettings)):
        rows = "\n".join(f"| {v} | {d} | {_cell(text)} |" for v, d, text in settings_rows(cls))
        parts.append(f"**{title}**\n\n| variable | default | meaning |\n|---|---|---|\n{rows}\n")
    return "\n".join(parts)


def _readme_headline() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- headline table:[^\n]*-->\n(.*?)\n<!-- end of headline table -->", text, re.S)
    if not match:
        raise ValueError("README.md has no headline table between its markers")
    return match.group(1).replace("](results/", "](../results/")


def on_files(files, config):
    """Serve results/ (pages and figures) beside the docs, under results/."""
    from mkdocs.structure.files import File

    for path in sorted((ROOT / "results").rglob("*")):
        if path.suffix in RESULTS_SUFFIXES and path.is_file():
            files.append(File.generated(config, path.relative_to(ROOT).as_posix(), abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page, config, files):
    if SETTINGS_MARK in markdown:
        markdown = markdown.replace(SETTINGS_MARK, settings_table())
    if HEADLINE_MARK in markdown:
        markdown = markdown.replace(HEADLINE_MARK, _readme_headline())
    if not page.file.src_uri.startswith("results/"):
        # ../results/... works on the repository's web view; on the site the results sit under the root.
        depth = page.file.src_uri.count("/")
        markdown = markdown.replace("](../results/", "](" + "../" * depth + "results/")
    return markdown
