"""Typed settings read from YAML: one base class, one way to report errors.

Every config object (model configs, job specs) is a frozen pydantic model that
forbids unknown keys.  `from_yaml_document` turns pydantic's errors into one
ConfigError whose lines each name `file:line`, the field, and what was expected.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Annotated, Any, Self, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Tag, ValidationError

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


def tagged_members(annotation: Any) -> dict[str, type[BaseModel]]:
    """The settings classes of a tagged union (`Annotated[X, Tag("x")] | ...`) by tag; {} for any other type."""
    members = {}
    for candidate in get_args(annotation):
        if get_origin(candidate) is Annotated:
            cls, *metadata = get_args(candidate)
            members.update({m.tag: cls for m in metadata if isinstance(m, Tag)})
    return members


@dataclass(frozen=True)
class Place:
    """Where a validation error's location leads: the path as the file has it, and the settings class there."""

    path: tuple[Any, ...]  # without the tags pydantic puts in a tagged union's location
    settings: type[BaseModel] | None  # the settings class the path ends in, if any
    alternatives: dict[str, type[BaseModel]]  # the classes of the last tagged union on the way, by tag
    tag: str | None  # the one of them the path went through


def place_of(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> Place:
    """Follow pydantic's location `loc` down from `model`, stepping over the tags of tagged unions."""
    path: list[Any] = []
    inner, alternatives, tag, parts = model, {}, None, list(loc)
    while parts:
        part = parts.pop(0)
        path.append(part)
        field = inner.model_fields.get(str(part)) if inner else None
        members = tagged_members(field.annotation) if field else {}
        if members and parts and str(parts[0]) in members:
            tag = str(parts.pop(0))
            inner, alternatives = members[tag], members
        else:
            inner = settings_type(field.annotation) if field else None
    return Place(tuple(path), inner, alternatives, tag)


def unknown_key_message(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    """Why a key is refused: a setting of another kind (a tagged union), a near miss, or unknown."""
    key, place = str(loc[-1]), place_of(model, loc[:-1])
    owners = [tag for tag, cls in place.alternatives.items() if key in cls.model_fields]
    if owners and place.settings is not None and key not in place.settings.model_fields:
        return f"a setting of kind {' and '.join(owners)} only, not of kind {place.tag}"
    known = list(place.settings.model_fields) if place.settings else []
    near = difflib.get_close_matches(key, known, n=1)
    return f"unknown key; did you mean {near[0]}?" if near else "unknown key (see docs/job-file.md)"


def describe_validation_error(
    exc: ValidationError, doc: YamlDocument, root: FieldPath = (), model: type[BaseModel] | None = None
) -> str:
    """One line per problem: `file:line: field.path: what was expected (got value)`."""
    problems = []
    for error in exc.errors():
        inner = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
        loc = (*root, *place_of(model, inner).path)
        message, got = error["msg"], error.get("input")
        tag = (error.get("ctx") or {}).get("tag_field")
        if tag and isinstance(got, dict):  # a tagged union's tag names no member: the error is the tag's
            loc, got = (*loc, tag), got.get(tag)
        name = ".".join(str(part) for part in loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            message = unknown_key_message(model, inner)
        elif error["type"] == "missing":
            message = "required field is missing"
        suffix = "" if error["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else f" (got {got!r})"
        problems.append(f"{doc.where(loc)}: {name}: {message}{suffix}")
    return "\n".join(problems)


def settings_dict(settings: BaseModel) -> dict[str, Any]:
    """Plain JSON-able data, for checkpoints, manifests and fingerprints."""
    return settings.model_dump(mode="json")
