"""docs/job-file.md, written from the job spec's own fields, types, defaults and descriptions.

    python -m pipeline.jobdoc > docs/job-file.md

A test holds the file to this output, so the reference never lists a field
the spec does not have, or misses one it does.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pipeline.settings import settings_type, tagged_members
from pipeline.spec import JobSpec

HEADER = """# The job file

A job file is YAML; `segment-archive submit JOB.yaml` runs it, `segment-archive plan JOB.yaml`
shows what would run.  Unknown keys are refused with the nearest valid one; every error
names `file:line` and the field.  Relative paths are relative to the job file, `~` is the
home folder; object stores take their credentials from the environment, never from here.
This page is generated from the spec itself (`python -m pipeline.jobdoc`).
"""


def type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{v}`" for v in get_args(annotation))
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        named = " or ".join(type_name(a) for a in args if a is not type(None))
        return named + (" (optional)" if type(None) in args else "")
    if origin is tuple:
        return "[" + ", ".join(type_name(a) for a in get_args(annotation)) + "]"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.default
    if isinstance(value, BaseModel) or value is None:
        return "" if value is None else "(section)"
    return f"`{json.dumps(value)}`"


def rows(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(field path, type, default, description) of every field, sections first-level before their fields."""
    for name, field in model.model_fields.items():
        yield from field_rows(f"{prefix}{name}", [field])


def field_rows(path: str, fields: list[FieldInfo], only: str = "") -> Iterator[tuple[str, str, str, str]]:
    """The rows of one field, as one or more classes of a tagged union have it (`only`: which kinds)."""
    field = fields[0]
    description = (field.description or "") + only
    inner, members = settings_type(field.annotation), tagged_members(field.annotation)
    if members:
        yield path, "section", "", description
        yield from union_rows(members, path + ".")
    elif inner is not None:
        yield path, "section", "", description or (inner.__doc__ or "").strip().split("\n")[0]
        yield from rows(inner, path + ".")
    else:
        types = dict.fromkeys(type_name(f.annotation) for f in fields)  # a tag: each class's own value
        defaults = [default_text(f) for f in fields if not f.is_required()]
        yield path, " \\| ".join(types), defaults[0] if defaults else "**required**", description


def union_rows(members: dict[str, type[BaseModel]], prefix: str) -> Iterator[tuple[str, str, str, str]]:
    """The fields of a tagged union's classes, each once, saying which tags have it when not all do."""
    names = dict.fromkeys(name for cls in members.values() for name in cls.model_fields)
    for name in names:
        holders = {tag: cls.model_fields[name] for tag, cls in members.items() if name in cls.model_fields}
        only = "" if len(holders) == len(members) else f" (kind {' and '.join(holders)} only)"
        yield from field_rows(prefix + name, list(holders.values()), only)


def reference() -> str:
    lines = [HEADER, "| field | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{path}` | {kind} | {default} | {text} |" for path, kind, default, text in rows(JobSpec)]
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(reference())


if __name__ == "__main__":
    main()
