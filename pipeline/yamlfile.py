"""Read YAML safely, remembering the line of every field.

Safe means: only plain data (no Python tags), no anchors or aliases (an alias
bomb expands to gigabytes when walked), and a size limit on the file.  The
lines let config errors say where in the file the bad field is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

MAX_YAML_BYTES = 1 << 20

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDocument:
    """Parsed data plus where each field stands in the source."""

    data: Any
    source: str
    lines: dict[FieldPath, int] = field(default_factory=dict)

    def where(self, path: FieldPath) -> str:
        """`file:line` of the field (or of its nearest parent), for messages."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(path[:cut])
            if line is not None:
                return f"{self.source}:{line}"
        return self.source


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ConfigError(
                f"{self.name}:{event.start_mark.line + 1}: YAML aliases (*name) are not "
                "allowed in job and model files; write the value out"
            )
        return super().compose_node(parent, index)


_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")
}


def _to_python(node: yaml.Node, path: FieldPath, lines: dict[FieldPath, int], loader: yaml.SafeLoader) -> Any:
    lines[path] = node.start_mark.line + 1
    if node.tag not in _PLAIN_TAGS:
        raise ConfigError(
            f"{loader.name}:{node.start_mark.line + 1}: tag {node.tag!r} is not allowed (plain data only)"
        )
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConfigError(f"{loader.name}:{key_node.start_mark.line + 1}: keys must be strings, got {key!r}")
            if key in result:
                raise ConfigError(f"{loader.name}:{key_node.start_mark.line + 1}: key {key!r} appears twice")
            result[key] = _to_python(value_node, (*path, key), lines, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, source: str = "<string>") -> YamlDocument:
    """Parse one YAML document into plain data with field lines."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{source}: {len(text)} bytes is larger than the {MAX_YAML_BYTES} allowed for a YAML file")
    loader = _NoAliasLoader(text)
    loader.name = source
    try:
        node = loader.get_single_node()
        lines: dict[FieldPath, int] = {}
        data = {} if node is None else _to_python(node, (), lines, loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a job or model file") from None
    finally:
        loader.dispose()
    return YamlDocument(data=data, source=source, lines=lines)


def read_yaml(path: str | Path) -> YamlDocument:
    """Read a YAML file; a missing or unreadable file is a ConfigError naming it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: {size} bytes is larger than the {MAX_YAML_BYTES} allowed for a YAML file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_yaml(text, str(path))
