"""Commands as the documentation writes them: the bash block after a marker comment in a Markdown file."""

from __future__ import annotations

import re
import shlex
from pathlib import Path


def marked_block(path: Path, marker: str) -> list[list[str]]:
    """The commands of the fenced block right after `<!-- {marker}...-->`, each split as a shell would
    (comments dropped, backslash continuations joined)."""
    text = path.read_text()
    match = re.search(rf"<!-- {re.escape(marker)}[^\n]*-->\n```(?:bash|sh)\n(.*?)\n```", text, re.S)
    if match is None:
        raise AssertionError(f"{path.name} has no ```bash block after <!-- {marker} ... -->")
    lines = match.group(1).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if shlex.split(line, comments=True)]
