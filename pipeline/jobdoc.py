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

from pipeline.settings import settings_type
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
        path = f"{prefix}{name}"
        inner = settings_type(field.annotation)
        if inner is not None:
            yield path, "section", "", field.description or (inner.__doc__ or "").strip().split("\n")[0]
            yield from rows(inner, path + ".")
        else:
            yield path, type_name(field.annotation), default_text(field), field.description or ""


def reference() -> str:
    lines = [HEADER, "| field | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{path}` | {kind} | {default} | {text} |" for path, kind, default, text in rows(JobSpec)]
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(reference())


if __name__ == "__main__":
    main()
