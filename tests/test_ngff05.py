"""output.format ngff-0.5: Zarr v3, chunks inside shards of one work unit, read by readers that know nothing of us.

The same job in ngff-0.4 and ngff-0.5 stores the same values at every level; the
0.5 store writes one file per unit, validates as NGFF 0.5 (ome-zarr-models), opens
in ome-zarr-py, and resumes, verifies and reruns as the 0.4 one does.
"""

import re

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.driver import submit
from pipeline.errors import ConfigError, ExitCode
from pipeline.manifest import INSTANCE_PASS, Manifest
from pipeline.outcome import UnitState
from pipeline.spec import JobSpec
from tests.jobs import FORMATS, make_archive, make_job

pytestmark = pytest.mark.usefixtures("local_ray")
SIZES = ((70, 90), (45, 33))


def sharded_job(tmp_path, kind: str = "labels") -> JobSpec:
    archive = make_archive(tmp_path / "in", sizes=SIZES)
    return JobSpec.load(make_job(tmp_path, archive, kind=kind, chunks=(16, 16), unit=(32, 32), format="ngff-0.5"))


def levels(out, group: str, key: str) -> list[np.ndarray]:
    node = zarr.open_group(str(out / group / key), mode="r")
    return [np.asarray(node[str(level)]) for level in range(2) if str(level) in node]


@pytest.mark.parametrize("kind", ["labels", "probabilities"])
def test_the_same_job_stores_the_same_values_in_both_formats(tmp_path, kind):
    sharded = sharded_job(tmp_path / "a", kind)
    (tmp_path / "b").mkdir()
    plain = JobSpec.load(make_job(tmp_path / "b", tmp_path / "a" / "in", kind=kind, chunks=(32, 32)))
    assert submit(sharded).status == "complete" and submit(plain).status == "complete"
    group = "probabilities" if kind == "probabilities" else "labels"
    for key in ("img0", "img1"):
        mine, theirs = levels(tmp_path / "a" / "out.zarr", group, key), levels(tmp_path / "b" / "out.zarr", group, key)
        assert len(mine) == len(theirs) == 2
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_unit_writes_one_shard_file_of_whole_chunks(tmp_path):
    job = sharded_job(tmp_path)
    report = submit(job)
    level0 = zarr.open_array(str(tmp_path / "out.zarr" / "labels" / "img0" / "0"), mode="r")
    assert level0.metadata.zarr_format == 3 and level0.shards == (1, 32, 32) and level0.chunks == (1, 16, 16)
    files = [p for p in (tmp_path / "out.zarr" / "labels").rglob("0/c/*/*/*") if p.is_file()]
    assert len(files) == report.units_done == 2 * (3 * 3 + 2 * 2)  # a file per unit: 2 planes of 3 x 3, 2 x 2


def test_the_store_validates_as_ngff_0_5_and_opens_in_ome_zarr_py(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v05.image_label import ImageLabel
    from ome_zarr_models.v05.labels import Labels

    job = sharded_job(tmp_path)
    submit(job)
    root = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert Labels.from_zarr(root["labels"]).attributes.ome.labels == ["img0", "img1"]
    label = ImageLabel.from_zarr(root["labels/img0"])
    assert [d.path for d in label.attributes.ome.multiscales[0].datasets] == ["0", "1"]
    colors = label.attributes.ome.image_label.colors  # the test net's two classes; background shows through
    assert [c.label_value for c in colors] == [0, 1] and colors[0].rgba == (0, 0, 0, 0) and colors[1].rgba[3] == 255
    nodes = [n for n in Reader(parse_url(str(tmp_path / "out.zarr" / "labels" / "img0")))() if n.data]
    assert len(nodes) == 1 and np.asarray(nodes[0].data[0]).shape == (2, 70, 90)
    np.testing.assert_array_equal(np.asarray(nodes[0].data[1]), np.asarray(root["labels/img0/1"]))


def test_ngff_0_4_labels_and_0_5_probabilities_validate_with_their_translated_levels(tmp_path):
    from ome_zarr_models.v04.image_label import ImageLabel as ImageLabel04
    from ome_zarr_models.v04.labels import Labels as Labels04
    from ome_zarr_models.v05.image import Image as Image05

    archive = make_archive(tmp_path / "in", sizes=SIZES)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    submit(JobSpec.load(make_job(tmp_path / "a", archive, **FORMATS["ngff-0.4"])))
    submit(JobSpec.load(make_job(tmp_path / "b", archive, kind="probabilities", **FORMATS["ngff-0.5"])))
    labels = zarr.open_group(str(tmp_path / "a" / "out.zarr"), mode="r")
    assert Labels04.from_zarr(labels["labels"]).attributes.labels == ["img0", "img1"]
    assert ImageLabel04.from_zarr(labels["labels/img0"]).attributes.image_label.colors[0].rgba == (0, 0, 0, 0)
    probabilities = zarr.open_group(str(tmp_path / "b" / "out.zarr" / "probabilities" / "img0"), mode="r")
    level1 = Image05.from_zarr(probabilities).attributes.ome.multiscales[0].datasets[1]
    assert [t.type for t in level1.coordinateTransformations] == ["scale", "translation"]


@pytest.mark.parametrize("fmt", ["ngff-0.4", "ngff-0.5"])
def test_napari_ome_zarr_reads_every_level_as_labels_headless(tmp_path, fmt):
    from napari_ome_zarr import napari_get_reader

    archive = make_archive(tmp_path / "in", sizes=SIZES)
    job = JobSpec.load(make_job(tmp_path, archive, **FORMATS[fmt]))
    submit(job)
    path = str(tmp_path / "out.zarr" / "labels" / "img0")
    reader = napari_get_reader(path)
    assert reader is not None, f"napari-ome-zarr does not take {path}"
    [(data, meta, layer_type)] = reader(path)
    assert layer_type == "labels" and meta["axis_labels"] == ("z", "y", "x")
    for level, napari_level in zip(levels(tmp_path / "out.zarr", "labels", "img0"), data, strict=True):
        np.testing.assert_array_equal(np.asarray(napari_level), level)


def test_tensorstore_reads_every_level_as_zarr_does(tmp_path):
    ts = pytest.importorskip("tensorstore")
    submit(sharded_job(tmp_path))
    for level in ("0", "1"):
        path = str(tmp_path / "out.zarr" / "labels" / "img0" / level)
        theirs = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": path}}).result().read().result()
        np.testing.assert_array_equal(theirs, zarr.open_array(path, mode="r")[:])


def test_a_lost_shard_is_found_and_redone_exactly(tmp_path):
    job = sharded_job(tmp_path)
    submit(job)
    out = tmp_path / "out.zarr"
    shard = out / "labels" / "img0" / "0" / "c" / "1" / "1" / "2"
    original = shard.read_bytes()
    shard.unlink()
    result = CliRunner().invoke(main, ["status", str(tmp_path / "job.yaml"), "--verify"])
    assert "img0: 1 finished unit(s) without a chunk (units 14)" in result.output, result.output
    assert submit(job, verify=True).units_done == 1 and shard.read_bytes() == original


def test_a_store_of_the_other_format_is_refused_before_anything_is_written(tmp_path):
    job = sharded_job(tmp_path)
    submit(job)
    plain = make_job(tmp_path, tmp_path / "in", chunks=(32, 32))
    result = CliRunner().invoke(main, ["submit", str(plain)])
    assert result.exit_code == ExitCode.INVALID, result.output
    assert "holds an ngff-0.5 store, but output.format is ngff-0.4" in result.output


@pytest.mark.parametrize(
    "output, message",
    [
        ("{path: o.zarr, format: ngff-0.4, unit: [64, 64]}", "output.unit [64, 64] needs output.format: ngff-0.5"),
        ("{path: o.zarr, unit: [64, 64]}", "must hold whole chunks of [256, 256]"),  # ngff-0.5, by default
        ("{path: o.zarr, format: ngff-0.5, chunks: [48, 48], unit: [64, 64]}", "must hold whole chunks of [48, 48]"),
    ],
)
def test_a_unit_that_no_store_can_hold_is_a_config_error(tmp_path, output, message):
    (tmp_path / "job.yaml").write_text(f"name: j\ninput: {{path: in}}\nmodel: {{config: m.yaml}}\noutput: {output}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        JobSpec.load(tmp_path / "job.yaml")


def test_ngff_0_5_defaults_are_chunks_of_256_in_units_of_512_on_cpu_and_2048_on_gpu():
    base = {"name": "j", "input": {"path": "in"}, "model": {"config": "m.yaml"}}
    cpu = JobSpec.model_validate({**base, "output": {"path": "o", "format": "ngff-0.5"}})
    gpu = JobSpec.model_validate(
        {**base, "output": {"path": "o", "format": "ngff-0.5"}, "resources": {"gpus_per_actor": 1}}
    )
    assert cpu.output.chunk_shape == (256, 256) and cpu.unit_shape == (512, 512) and gpu.unit_shape == (2048, 2048)
    assert JobSpec.model_validate({**base, "output": {"path": "o"}}).unit_shape == cpu.unit_shape  # the default
    plain = JobSpec.model_validate({**base, "output": {"path": "o", "format": "ngff-0.4"}})
    assert plain.unit_shape == plain.output.chunk_shape == (512, 512)


def test_a_new_store_is_ngff_0_5_unless_the_job_file_says_otherwise(tmp_path):
    archive = make_archive(tmp_path / "in", sizes=((64, 64),))
    job = JobSpec.load(make_job(tmp_path, archive, chunks=(16, 16), unit=(32, 32), format=None))
    assert job.output.format is None and job.output.store_format == "ngff-0.5"
    assert submit(job).status == "complete"
    assert zarr.open_group(str(tmp_path / "out.zarr"), mode="r").metadata.zarr_format == 3
    recorded = Manifest(str(tmp_path / "out.zarr")).job()["spec"]["output"]
    assert recorded["format"] == "ngff-0.5"  # the job as it ran, for status and report.html


def test_a_job_that_wrote_ngff_0_4_before_the_default_changed_goes_on_with_its_store(tmp_path):
    """Its job file names no format: the store at output.path decides, so the nightly rerun is up to date."""
    archive = make_archive(tmp_path / "in", sizes=((64, 64),))
    first = submit(JobSpec.load(make_job(tmp_path, archive, chunks=(32, 32))))  # ngff-0.4, as every job then
    rerun = submit(JobSpec.load(make_job(tmp_path, archive, chunks=(32, 32), format=None)))
    assert first.units_done == 8 and rerun.units_done == 0 and rerun.job_fingerprint == first.job_fingerprint
    assert zarr.open_group(str(tmp_path / "out.zarr"), mode="r").metadata.zarr_format == 2


def test_an_ngff_0_4_store_and_a_unit_without_a_format_is_a_config_error(tmp_path):
    archive = make_archive(tmp_path / "in", sizes=((64, 64),))
    submit(JobSpec.load(make_job(tmp_path, archive, chunks=(32, 32))))
    job = JobSpec.load(make_job(tmp_path, archive, chunks=(16, 16), unit=(32, 32), format=None))
    with pytest.raises(ConfigError, match=r"holds an ngff-0.4 store, whose work unit is its chunk; output.unit"):
        submit(job)


def test_an_earlier_ngff_0_4_instance_job_goes_on_with_its_unit_for_a_new_image(tmp_path):
    """A new image of an instance job that wrote ngff-0.4 before lands in its 0.4 store, in 0.4's units, through
    both passes (the run goes on with the format it resolved, not the default)."""
    archive = make_archive(tmp_path / "in", sizes=((64, 64),))
    submit(JobSpec.load(make_job(tmp_path, archive, kind="instances", instances="{}", chunks=(32, 32))))
    make_archive(tmp_path / "new", sizes=((48, 40),))
    (tmp_path / "new" / "img0.tif").rename(archive / "img1.tif")  # a second image arrives
    job = JobSpec.load(make_job(tmp_path, archive, kind="instances", instances="{}", chunks=(32, 32), format=None))
    report = submit(job)
    assert report.status == "complete" and report.units_done == 2 * 2 * 2  # img1: 2 planes of 2 x 2 units
    labels = zarr.open_array(str(tmp_path / "out.zarr" / "labels" / "img1" / "0"), mode="r")
    assert labels.metadata.zarr_format == 2 and labels.chunks == (1, 32, 32)
    relabelled = Manifest(str(tmp_path / "out.zarr")).unit_states("img1", INSTANCE_PASS)
    assert len(relabelled) == 8 and set(relabelled.tolist()) == {UnitState.DONE}  # one block a unit
