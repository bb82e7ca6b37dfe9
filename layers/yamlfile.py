"""Reading the YAML files users edit (rules, workflow, review rules, indicator registry, targets, tokens).

One place for the three ways such a file can fail, each a RuleError naming the file and the remedy: it is
missing, it is not UTF-8 text, it is not YAML. What the document must contain is checked by its parser.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import RuleError


def read_yaml_file(path: str | Path, what: str, *, missing_hint: str = "give an existing YAML file"):
    """The parsed YAML document of ``path`` (any YAML value; None for an empty file).

    ``what`` names the file in messages ("rules", "workflow", "tokens" …); ``missing_hint`` is the remedy
    given when the file does not exist.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuleError(f"{what} file {str(path)!r} does not exist; {missing_hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"{what} file {str(path)!r} cannot be read as UTF-8 text ({exc}); save it as UTF-8") \
            from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(f"{what} file {str(path)!r} cannot be read as YAML (not valid YAML): {exc}") from None
