"""`submit` with output.kind instances: labels equal to labelling each whole plane, objects, resume."""

import csv
import json
from collections import Counter

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from skimage.measure import label

from pipeline.cli import main
from pipeline.driver import submit
from pipeline.errors import ExitCode
from pipeline.instances.fragments import label_plane
from pipeline.io import ngff
from pipeline.manifest import INSTANCE_PASS, Manifest
from pipeline.outputspec import InstancesSpec
from pipeline.spec import JobSpec
from tests.jobs import FORMATS, make_archive, make_job, manifest_dir, records, store_bytes, stored

pytestmark = pytest.mark.usefixtures("local_ray")
SIZES = ((70, 90), (45, 33))  # two planes each: ids continue from plane 0 to plane 1
# The random test net's foreground probability lies in about [0.468, 0.477]: thresholds inside it.
T, SEED_T = 0.473, 0.4745


def instances_job(tmp_path, instances: str, chunks=(16, 24)) -> JobSpec:
    archive = make_archive(tmp_path / "in", sizes=SIZES)
    return JobSpec.load(make_job(tmp_path, archive, kind="instances", instances=instances, chunks=chunks))


def whole_plane_labels(job: JobSpec, key: str) -> np.ndarray:
    """The single-process definition: each whole plane of the stored object probability, ids continued."""
    probability = stored(job, key, "probabilities")[0]  # (c=1, z, y, x) -> (z, y, x)
    planes, offset = [], 0
    for plane in probability:
        labels, objects = label_plane(plane.astype(np.float32), plane.shape, job.output.instances)
        planes.append(np.where(labels > 0, labels + offset, 0))
        offset += objects.count
    return np.stack(planes)


@pytest.mark.parametrize("chunks", [(16, 24), (32, 32)])
def test_components_equal_skimage_label_of_each_whole_plane(tmp_path, chunks):
    job = instances_job(tmp_path, f"{{method: components, connectivity: 4, threshold: {T}}}", chunks)
    report = submit(job)
    assert report.status == "complete" and sorted(report.images_completed) == ["img0", "img1"]
    for key in ("img0", "img1"):
        labels = stored(job, key)
        assert labels.dtype == np.uint32
        probability = stored(job, key, "probabilities")[0]
        first = label(probability[0] >= T, connectivity=1)
        assert first.max() > 5
        np.testing.assert_array_equal(labels[0], first)
        second = label(probability[1] >= T, connectivity=1)
        np.testing.assert_array_equal(labels[1], np.where(second > 0, second + first.max(), 0))
    assert report.objects == sum(int(stored(job, k).max()) for k in ("img0", "img1"))


def test_watershed_equals_the_whole_plane_watershed_and_writes_the_object_table(tmp_path):
    job = instances_job(
        tmp_path, f"{{method: watershed, threshold: {T}, seed_threshold: {SEED_T}, halo: 20, min_size: 3}}"
    )
    last = {}  # phase -> (done, total) as the progress hook last saw it
    submit(job, progress=lambda done, total, mpx, phase: last.__setitem__(phase, (done, total)))
    blocks = 2 * (5 * 4 + 3 * 2)  # two planes of 70 x 90 and of 45 x 33 in 16 x 24 blocks
    assert last == {
        "units": (blocks, blocks),
        "instance blocks summarised": (blocks, blocks),
        "instance blocks relabelled": (blocks, blocks),
    }
    for key in ("img0", "img1"):
        labels = stored(job, key)
        np.testing.assert_array_equal(labels, whole_plane_labels(job, key))
        plane = stored(job, key, "probabilities")[0, 0]
        _, components = label_plane(plane, plane.shape, InstancesSpec(threshold=T, min_size=3))
        assert np.unique(labels[0]).size - 1 > components.count > 5  # the watershed split some
        with open(records(tmp_path / "out.zarr") / "objects" / f"{key}.csv") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["id"]) for r in rows] == list(range(1, labels.max() + 1))
        areas = np.bincount(labels.ravel())[1:]
        assert [int(r["area"]) for r in rows] == areas.tolist() and areas.min() >= 3
        assert {r["z"] for r in rows} == {"0", "1"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_image_label_lists_each_object_with_its_colour_and_measurements_for_viewers(tmp_path, fmt):
    from napari_ome_zarr import napari_get_reader
    from ome_zarr_models.v04.image_label import ImageLabel as ImageLabel04
    from ome_zarr_models.v05.image_label import ImageLabel as ImageLabel05

    archive = make_archive(tmp_path / "in", sizes=SIZES)
    rule = f"{{method: components, threshold: {T}}}"
    job = JobSpec.load(make_job(tmp_path, archive, kind="instances", instances=rule, **FORMATS[fmt]))
    submit(job)
    labels = stored(job, "img0")
    group = zarr.open_group(str(tmp_path / "out.zarr" / "labels" / "img0"), mode="r")
    ImageLabel = ImageLabel04 if fmt == "ngff-0.4" else ImageLabel05
    ImageLabel.from_zarr(group)  # colours and properties list the same label values (ome-zarr-models)
    with open(records(tmp_path / "out.zarr") / "objects" / "img0.csv") as f:
        rows = list(csv.DictReader(f))
    image_label = ngff.ngff_keys(dict(group.attrs))["image-label"]
    listed = image_label["properties"]
    assert [p["label-value"] for p in listed] == list(range(labels.max() + 1))
    assert [p["area"] for p in listed[1:]] == [int(r["area"]) for r in rows] == np.bincount(labels.ravel())[1:].tolist()
    assert [p["z"] for p in listed[1:]] == [int(r["z"]) for r in rows]
    [(_, meta, _)] = napari_get_reader(group.store.root.as_posix())(group.store.root.as_posix())
    assert meta["colormap"][0] == [0, 0, 0, 0] and len(meta["colormap"]) == labels.max() + 1
    assert meta["properties"]["area"][1:] == [p["area"] for p in listed[1:]]


def test_objects_the_watershed_kept_whole_for_the_halo_are_a_warning_with_exit_3(tmp_path):
    rule = f"{{method: watershed, threshold: {T}, seed_threshold: {SEED_T}, halo: 4}}"
    instances_job(tmp_path, rule)
    runner = CliRunner()
    result = runner.invoke(main, ["submit", str(tmp_path / "job.yaml"), "--quiet"])
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert "(warnings)" in result.output
    assert "img0: " in result.output and "than output.instances.halo (4 px) were kept whole" in result.output
    assert "set output.instances.halo to " in result.output
    assert "with a warning" in runner.invoke(main, ["status", str(tmp_path / "job.yaml")]).output
    assert '<h2 class="bad">Warnings</h2>' in (records(tmp_path / "out.zarr") / "report.html").read_text()
    report = json.loads((records(tmp_path / "out.zarr") / "run-report.json").read_text())
    assert report["status"] == "warnings" and set(report["warnings"]) == {"img0", "img1"}


def test_a_halo_as_large_as_the_plane_warns_of_nothing(tmp_path):
    job = instances_job(tmp_path, f"{{method: watershed, threshold: {T}, seed_threshold: {SEED_T}, halo: 90}}")
    report = submit(job)
    assert report.status == "complete" and report.warnings == {}


def test_the_driver_reads_each_planes_merged_objects_once(tmp_path, monkeypatch):
    """The relabel rows (their id offsets) and the image's finish (its object table) share one read."""
    reads: Counter[tuple[str, int]] = Counter()
    read = Manifest.plane_objects

    def counted(self, key, plane):
        reads[(key, plane)] += 1
        return read(self, key, plane)

    monkeypatch.setattr(Manifest, "plane_objects", counted)  # the driver's reads; Ray's workers have their own
    report = submit(instances_job(tmp_path, f"{{method: components, threshold: {T}}}"))
    assert report.status == "complete" and report.objects > 0
    assert reads == {(key, plane): 1 for key in ("img0", "img1") for plane in (0, 1)}


def forget_relabelled(out, key: str, planes: list[int], n_planes: int = 2) -> None:
    """Mark the relabelling of whole planes of an image not done, as a kill before their commit would."""
    manifest = Manifest(str(out))
    states = manifest.unit_states(key, INSTANCE_PASS)
    per_plane = len(states) // n_planes
    for plane in planes:
        states[plane * per_plane : (plane + 1) * per_plane] = 0
    meta = json.loads((manifest_dir(out) / "states" / INSTANCE_PASS / key / "meta.json").read_text())
    manifest.commit_states(key, INSTANCE_PASS, meta["input"], states, [0])


def test_rerun_recomputes_only_the_lost_instance_work(tmp_path):
    job = instances_job(tmp_path, f"{{method: watershed, halo: 24, threshold: {T}, seed_threshold: {SEED_T}}}")
    submit(job)
    out = tmp_path / "out.zarr"
    reference = store_bytes(out)
    # As if killed after merging img1 plane 1 but before relabelling its blocks:
    (manifest_dir(out) / "images" / "img1.json").unlink()
    forget_relabelled(out, "img1", planes=[1])
    for chunk in (out / "labels" / "img1" / "0" / "1").rglob("*"):
        if chunk.is_file():
            chunk.unlink()
    again = submit(job)
    assert again.units_done == 0  # the net did not run again
    assert again.images_completed == ["img1"]
    assert store_bytes(out) == reference


def test_demo_instances_job_numbers_the_cells_of_the_bundled_slices(tmp_path):
    """The shipped job on the shipped slices and model, through the CLI, in 256 px blocks."""
    from click.testing import CliRunner

    from pipeline.cli import main
    from tests.conftest import ROOT

    text = (ROOT / "jobs" / "demo-instances.yaml").read_text()
    text = text.replace("../samples", str(ROOT / "samples")).replace("../models", str(ROOT / "models"))
    text = text.replace("../out/demo-instances.zarr", str(tmp_path / "out.zarr"))
    (tmp_path / "job.yaml").write_text(text)
    result = CliRunner().invoke(main, ["submit", str(tmp_path / "job.yaml"), "--quiet"])
    assert result.exit_code == 0, result.output
    job = JobSpec.load(tmp_path / "job.yaml")
    for key in ("0", "1", "2"):
        labels = stored(job, key)  # 2-D slices: (y, x), and (c=1, y, x) probabilities
        probability = stored(job, key, "probabilities")[0]
        expected, objects = label_plane(probability, probability.shape, job.output.instances)
        np.testing.assert_array_equal(labels, expected)  # 4 blocks per slice, one whole-plane answer
        assert 50 < objects.count < 2000  # cells of an EM slice, not noise and not one blob
        with open(records(tmp_path / "out.zarr") / "objects" / f"{key}.csv") as f:
            assert sum(1 for _ in f) == objects.count + 1


def test_an_unreadable_probability_block_quarantines_its_image_only(tmp_path):
    job = instances_job(tmp_path, f"{{method: components, threshold: {T}}}")
    submit(job)
    out = tmp_path / "out.zarr"
    # img1's instance pass to do again, with one chunk of its object probability corrupt:
    (manifest_dir(out) / "images" / "img1.json").unlink()
    forget_relabelled(out, "img1", planes=[0, 1])
    for table in (manifest_dir(out) / "instances" / "img1").glob("*.npz"):
        table.unlink()
    (out / "probabilities" / "img1" / "0" / "0" / "1" / "0" / "0").write_bytes(b"not a blosc chunk")
    report = submit(job)
    assert report.status == "partial" and report.images_completed == []
    assert list(report.units_quarantined) == ["img1:instances:1/0/0"]
    assert "img1 plane 1 block (0, 0)" in report.units_quarantined["img1:instances:1/0/0"]
    assert stored(job, "img0").max() > 0  # the other image's objects stand
