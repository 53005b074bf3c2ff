"""Job specs: rejected before any work, with the YAML line and the field named."""

import pytest
from pydantic import ValidationError

from pipeline.errors import ConfigError
from pipeline.spec import InputSpec, JobSpec, ResourcesSpec
from tests.conftest import ROOT

GOOD = f"""\
name: t
input: {{path: /data/archive.zarr}}
model: {{config: {ROOT}/configs/models/unet-small.yaml}}
output: {{path: /tmp/out.zarr, kind: labels, chunks: [256, 256]}}
"""


def _load(tmp_path, text):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return JobSpec.load(path)


def test_a_good_job_loads_with_defaults(tmp_path):
    spec = _load(tmp_path, GOOD)
    assert spec.inference.precision == "fp32" and spec.output.chunks == (256, 256)
    assert spec.resources.actors == 1


def test_unknown_keys_name_the_line_and_field(tmp_path):
    with pytest.raises(ConfigError, match=r"job\.yaml:6: inference\.tiles: unknown key"):
        _load(tmp_path, GOOD + "inference:\n  tiles: 3\n")


def test_wrong_types_name_the_line_and_field(tmp_path):
    with pytest.raises(ConfigError, match=r"job\.yaml:7: inference\.batch_size: .*integer.*\(got 'many'\)"):
        _load(tmp_path, GOOD + "inference:\n  tile: 512\n  batch_size: many\n")


def test_enum_values_are_listed(tmp_path):
    with pytest.raises(
        ConfigError, match=r"output\.kind: Input should be 'labels', 'mask', 'probabilities' or 'instances'"
    ):
        _load(tmp_path, GOOD.replace("kind: labels", "kind: instances-please"))


def test_cuda_without_a_gpu_per_actor_is_rejected_before_work(tmp_path):
    with pytest.raises(ConfigError, match=r"job\.yaml:\d+: .*device is 'cuda' but resources\.gpus_per_actor is 0"):
        _load(tmp_path, GOOD + "inference: {device: cuda}\n")
    spec = _load(tmp_path, GOOD + "inference: {device: cuda}\nresources: {gpus_per_actor: 1}\n")
    assert spec.resources.io_in_actor() is False


def test_a_missing_checkpoint_is_rejected_before_work(tmp_path):
    text = GOOD.replace(f"config: {ROOT}/configs/models/unet-small.yaml", "checkpoint: nope.safetensors")
    with pytest.raises(ConfigError, match=r"job\.yaml:3: model\.checkpoint: no such file .*nope\.safetensors"):
        _load(tmp_path, text)


def test_missing_required_fields(tmp_path):
    with pytest.raises(ConfigError, match=r"output: required field is missing"):
        _load(tmp_path, "name: t\ninput: {path: x}\nmodel: {config: y}\n")


def test_yaml_aliases_are_refused_so_no_alias_bomb_expands(tmp_path):
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b]\n"
    with pytest.raises(ConfigError, match="aliases"):
        _load(tmp_path, bomb)


def test_python_tags_are_not_executed(tmp_path):
    with pytest.raises(
        ConfigError, match=r"job\.yaml:1: tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"
    ):
        _load(tmp_path, "name: !!python/object/apply:os.system ['touch pwned']\n")
    assert not (tmp_path / "pwned").exists()


def test_relative_paths_resolve_against_the_job_file(tmp_path):
    spec = _load(tmp_path, GOOD.replace("/data/archive.zarr", "archive.zarr"))
    assert spec.input.path == str(tmp_path / "archive.zarr")


def test_a_symlinked_job_file_resolves_against_the_link_as_in_a_configmap_mount(tmp_path):
    hidden = tmp_path / "jobs" / "..2026_11_23" / "job.yaml"
    hidden.parent.mkdir(parents=True)
    hidden.write_text(GOOD.replace("/data/archive.zarr", "../archive.zarr"))
    (tmp_path / "jobs" / "job.yaml").symlink_to(hidden)
    assert JobSpec.load(tmp_path / "jobs" / "job.yaml").input.path == str(tmp_path / "archive.zarr")


def test_fingerprint_follows_results_not_speed(tmp_path):
    spec = _load(tmp_path, GOOD)
    faster = spec.model_copy(update={"inference": spec.inference.model_copy(update={"batch_size": 32})})
    other = spec.model_copy(update={"inference": spec.inference.model_copy(update={"precision": "bf16"})})
    assert spec.fingerprint("m") == faster.fingerprint("m")
    assert spec.fingerprint("m") != other.fingerprint("m") != spec.fingerprint("m2")


@pytest.mark.parametrize(
    ("io", "gpus_per_actor", "in_actor"),
    [("auto", 0, True), ("auto", 1, False), ("tasks", 0, False), ("actor", 1, True)],
)
def test_cpu_actors_do_their_own_io_and_gpu_actors_are_fed_by_tasks(io, gpus_per_actor, in_actor):
    assert ResourcesSpec(io=io, gpus_per_actor=gpus_per_actor).io_in_actor() is in_actor


@pytest.mark.parametrize("axes", ["zyxz", "qyx", "zy", "ZYX"])
def test_input_axes_follow_the_readers_rule(tmp_path, axes):
    """One rule (pipeline.axes) for the job file and the readers: what one refuses, the other does too."""
    from pipeline.axes import axes_problem
    from pipeline.errors import InputError
    from pipeline.io.image import check_axes

    problem = axes_problem(axes.lower())
    try:
        check_axes(axes, len(axes), "img.tif")
        reader_refuses = False
    except InputError:
        reader_refuses = True
    assert reader_refuses == (problem is not None)
    if problem:
        with pytest.raises(ValidationError, match="at most once and include y and x"):
            InputSpec(path="x", axes=axes)
    else:
        assert InputSpec(path="x", axes=axes).axes == axes.lower()


def test_cpus_per_actor_auto_gives_a_local_cpu_actor_the_machines_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert ResourcesSpec().actor_cpus() == 16  # the default: one CPU actor using every core
    assert ResourcesSpec(actors=4).actor_cpus() == 4
    assert ResourcesSpec(gpus_per_actor=1).actor_cpus() == 1  # a GPU actor's host thread
    assert ResourcesSpec(address="auto").actor_cpus() == 1  # a cluster: node sizes unknown here
    assert ResourcesSpec(cpus_per_actor=3).actor_cpus() == 3
    with pytest.raises(ValidationError, match="greater than 0, or auto"):
        ResourcesSpec(cpus_per_actor=0)


def test_units_per_task_auto_is_small_for_a_cpu_actor_and_larger_for_reader_tasks():
    assert ResourcesSpec().task_units() == 2  # the CPU actor reads and writes its own units
    assert ResourcesSpec(io="tasks").task_units() == 16
    assert ResourcesSpec(gpus_per_actor=1).task_units() == 16  # GPU actors are fed by reader tasks
    assert ResourcesSpec(units_per_task=5).task_units() == 5
    with pytest.raises(ValidationError, match="1 to 64, or auto"):
        ResourcesSpec(units_per_task=65)
