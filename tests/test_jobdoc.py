"""docs/job-file.md is the job spec's own reference: every field, nothing else, up to date."""

from pathlib import Path

from pipeline.jobdoc import reference, rows
from pipeline.spec import JobSpec

DOC = Path(__file__).resolve().parents[1] / "docs" / "job-file.md"


def every_field(model, prefix=""):
    """Every field path of a settings class; a tagged union's (output's) fields once, as its classes give them."""
    from pipeline.settings import settings_type, tagged_members

    for name, field in model.model_fields.items():
        yield prefix + name
        members = tagged_members(field.annotation)
        if members:
            yield from dict.fromkeys(p for cls in members.values() for p in every_field(cls, prefix + name + "."))
        elif (inner := settings_type(field.annotation)) is not None:
            yield from every_field(inner, prefix + name + ".")


def test_the_reference_lists_every_field_of_the_spec_with_its_meaning():
    listed = [path for path, _, _, _ in rows(JobSpec)]
    assert listed == list(every_field(JobSpec))
    assert all(text for _, _, _, text in rows(JobSpec)), "a field without a description"


def test_docs_job_file_is_the_generated_reference():
    assert DOC.read_text() == reference(), "regenerate: python -m pipeline.jobdoc > docs/job-file.md"
