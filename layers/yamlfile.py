"""Reading the YAML files users edit (manifests, rules, workflow, review rules, indicator registry, targets,
tokens) and YAML bodies sent to the API.

One place for the ways such a text can fail, each an error naming the file and the remedy: it is missing, it
is not UTF-8 text, it is not YAML — or it is YAML no such file needs and a parser should not follow: nested
deeper than :data:`MAX_DEPTH` levels (PyYAML recurses once per level: 20 000 levels end Python's stack), or
aliases that expand to more than :data:`MAX_NODES` values (a "billion laughs" of nine lists of nine aliases
takes a few hundred bytes and expands to 387 million values), or an alias that refers to itself. What the
document must contain is checked by its parser.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import RuleError, YztError

MAX_DEPTH = 100  # nested mappings / sequences
MAX_NODES = 200_000  # values once every alias is expanded


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, composing at most MAX_DEPTH levels."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _TooDeep(f"nested more than {MAX_DEPTH} levels deep (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _TooDeep(Exception):
    pass


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document holds once its aliases are expanded (shared nodes counted each time they
    are used), without expanding them; _TooDeep for an alias that contains itself."""
    size: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            in_progress.discard(key)
            if size[key] > MAX_NODES:
                raise _TooDeep(f"its aliases expand to more than {MAX_NODES:,} values")
            continue
        if key in size:
            continue
        if key in in_progress:
            raise _TooDeep(f"an alias refers to itself (line {node.start_mark.line + 1})")
        in_progress.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in in_progress:
                raise _TooDeep(f"an alias refers to itself (line {child.start_mark.line + 1})")
            if id(child) not in size:
                stack.append((child, False))
    return size[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml_text(text: str, what: str, error: type[YztError] = RuleError):
    """The YAML document in ``text`` (None if empty); ``error`` (naming ``what``) if it is not YAML, nested
    too deeply or expands too far."""
    try:
        loader = _BoundedLoader(text)
    except yaml.YAMLError as exc:  # the reader refuses the text itself (a NUL, a control character)
        raise error(f"{what} cannot be read as YAML (not valid YAML): {exc}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _TooDeep as exc:
        raise error(f"{what} is not a YAML document this service reads: {exc}; write it out plainly") from None
    except RecursionError:
        raise error(f"{what} is nested too deeply to be read; at most {MAX_DEPTH} levels") from None
    except yaml.YAMLError as exc:
        raise error(f"{what} cannot be read as YAML (not valid YAML): {exc}") from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path, what: str, *, missing_hint: str = "give an existing YAML file",
                   error: type[YztError] = RuleError):
    """The parsed YAML document of ``path`` (any YAML value; None for an empty file).

    ``what`` names the file in messages ("rules", "workflow", "tokens" …); ``missing_hint`` is the remedy
    given when the file does not exist; ``error`` the class raised (RuleError, ManifestError …).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} file {str(path)!r} does not exist; {missing_hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{what} file {str(path)!r} cannot be read as UTF-8 text ({exc}); save it as UTF-8") \
            from None
    return load_yaml_text(text, f"{what} file {str(path)!r}", error)
