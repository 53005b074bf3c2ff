"""The output section: one settings class per output.kind, each with only the settings it uses."""

import pytest

from pipeline.errors import ConfigError
from pipeline.outputspec import InstancesOutput, LabelsOutput, MaskOutput, ProbabilitiesOutput
from pipeline.spec import JobSpec

BASE = "name: j\ninput: {path: /in}\nmodel: {config: /m.yaml}\noutput:\n  path: /o\n"


def output_of(lines: str):
    return JobSpec.from_yaml_text(BASE + lines, "job.yaml").output


@pytest.mark.parametrize(
    ("lines", "cls"),
    [
        ("", LabelsOutput),  # no kind: labels
        ("  kind: mask\n", MaskOutput),
        ("  kind: probabilities\n  probability_dtype: float16\n", ProbabilitiesOutput),
        ("  kind: instances\n", InstancesOutput),
    ],
)
def test_the_kind_picks_its_settings_class(lines, cls):
    assert type(output_of(lines)) is cls


def test_instances_get_their_default_rule_and_keep_one_given():
    assert output_of("  kind: instances\n").instances.method == "components"
    assert output_of("  kind: instances\n  instances: {method: watershed}\n").instances.method == "watershed"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("  kind: labels\n  instances: {method: watershed}\n", r"job\.yaml:7: output\.instances: a setting of kind "
         r"instances only, not of kind labels"),
        ("  kind: mask\n  probability_dtype: float16\n", r"job\.yaml:7: output\.probability_dtype: a setting of "
         r"kind probabilities and instances only, not of kind mask"),
        ("  kind: instances\n  instances: {method: flood}\n", r"job\.yaml:7: output\.instances\.method: Input "
         r"should be 'components' or 'watershed' \(got 'flood'\)"),
        ("  kind: instances-please\n", r"job\.yaml:6: output\.kind: Input should be 'labels', 'mask', "
         r"'probabilities' or 'instances' \(got 'instances-please'\)"),
        ("  kind: mask\n  chunk: [16, 16]\n", r"job\.yaml:7: output\.chunk: unknown key; did you mean chunks\?"),
        ("  chunks: [8, 8]\n", r"job\.yaml:6: output\.chunks: .*at least 16 x 16"),
    ],
)  # fmt: skip
def test_a_wrong_output_setting_names_its_line_the_field_and_the_kinds_that_have_it(lines, message):
    with pytest.raises(ConfigError, match=message):
        output_of(lines)


# Recorded with the code before the kinds became classes (2b4a495): a job file written then must keep
# its fingerprint, or its finished store would be refused as another job's.
RECORDED = {
    "labels": ({"format": "ngff-0.4"}, "883e0f0bdcb5835055e8fc70c1de524feccf1af9a396dcd5e18ef27b2c6b5ce3"),
    "mask": (
        {"kind": "mask", "format": "ngff-0.4"},
        "53dc2ada7b00ec04fd80657503ab8fe57cfe19a958e2d4144fc5141181421f3b",
    ),
    "probabilities-f16": (
        {"kind": "probabilities", "probability_dtype": "float16", "format": "ngff-0.4"},
        "60e978569dded2a7dcf10578e430d8ac9aa58ffa01f776e84475fd542e53c89a",
    ),
    "instances": (
        {"kind": "instances", "format": "ngff-0.4", "chunks": [256, 256]},
        "c0a31d6063ced257f5501d0d967a9fa6010865d56b0e74ae84e53d11c5aeeccd",
    ),
    "instances-watershed": (
        {"kind": "instances", "instances": {"method": "watershed", "halo": 64}},
        "31b893641ce0aa7e6b8911f314539f4897385012e377ddf8aea029580f4b2e39",
    ),
    "labels-0.5": (
        {"format": "ngff-0.5", "unit": [1024, 1024], "pyramid_levels": 2},
        "a038e3e1dce1234db0979cef865a38126f8bc39c00c0f83db30f6019475d681f",
    ),
}


@pytest.mark.parametrize("name", RECORDED)
def test_a_job_keeps_the_fingerprint_earlier_versions_recorded(name):
    output, recorded = RECORDED[name]
    document = {"name": "j", "input": {"path": "/in"}, "model": {"config": "/m.yaml"}, "inference": {"threshold": 0.7}}
    spec = JobSpec.model_validate({**document, "output": {"path": "/o", **output}})
    assert spec.fingerprint("m") == recorded
