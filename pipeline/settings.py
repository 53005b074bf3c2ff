"""Typed settings read from YAML: one base class, one way to report errors.

Every config object (model configs, job specs) is a frozen pydantic model that
forbids unknown keys.  `from_yaml_document` turns pydantic's errors into one
ConfigError whose lines each name `file:line`, the field, and what was expected.
"""

from __future__ import annotations

import difflib
from typing import Any, Self, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.errors import ConfigError
from pipeline.yamlfile import FieldPath, YamlDocument, parse_yaml, read_yaml


class Settings(BaseModel):
    """Frozen, strict about unknown keys and non-finite numbers; validated once, then trusted."""

    # NaN compares false with every bound (`threshold: .nan` would pass `gt=0` and give empty masks).
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, allow_inf_nan=False)

    @classmethod
    def from_yaml_document(cls, doc: YamlDocument, root: FieldPath = ()) -> Self:
        data = doc.data
        for key in root:
            data = data[key] if isinstance(data, dict) and key in data else {}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, doc, root, cls)) from None

    @classmethod
    def from_yaml(cls, path: str) -> Self:
        return cls.from_yaml_document(read_yaml(path))

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<string>") -> Self:
        return cls.from_yaml_document(parse_yaml(text, source))


def settings_type(annotation: Any) -> type[BaseModel] | None:
    """The settings class a field holds (directly or optionally), if any."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def field_names_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the settings object at `loc` below `model` ([] if loc does not lead to one)."""
    inner: type[BaseModel] | None = model
    for part in loc:
        field = inner.model_fields.get(str(part)) if inner else None
        inner = settings_type(field.annotation) if field else None
    return list(inner.model_fields) if inner else []


def describe_validation_error(
    exc: ValidationError, doc: YamlDocument, root: FieldPath = (), model: type[BaseModel] | None = None
) -> str:
    """One line per problem: `file:line: field.path: what was expected (got value)`."""
    problems = []
    for error in exc.errors():
        loc = (*root, *(part for part in error["loc"] if not str(part).startswith("function-")))
        name = ".".join(str(part) for part in loc) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            known = field_names_at(model, tuple(error["loc"][:-1])) if model else []
            near = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
            message = f"unknown key; did you mean {near[0]}?" if near else "unknown key (see docs/job-file.md)"
        elif error["type"] == "missing":
            message = "required field is missing"
        got = error.get("input")
        suffix = "" if error["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else f" (got {got!r})"
        problems.append(f"{doc.where(loc)}: {name}: {message}{suffix}")
    return "\n".join(problems)


def settings_dict(settings: BaseModel) -> dict[str, Any]:
    """Plain JSON-able data, for checkpoints, manifests and fingerprints."""
    return settings.model_dump(mode="json")
