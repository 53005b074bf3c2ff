"""Object stores: read Zarr and TIFF from s3:// (moto on 127.0.0.1), write masks and the manifest there.

Credentials and the endpoint come from the environment (FSSPEC_S3_ENDPOINT_URL,
AWS_*), never from a job file.
"""

from collections import Counter

import fsspec
import numpy as np
import pytest
import tifffile

from pipeline.io import open_archive

pytest.importorskip("moto")
pytest.importorskip("s3fs")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FSSPEC_S3_ENDPOINT_URL": endpoint,
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        import fsspec.config

        fsspec.config.conf.clear()
        fsspec.config.set_conf_env(fsspec.config.conf)
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="archive")
        yield endpoint
        fsspec.config.conf.clear()
    server.stop()


def test_tiff_and_zarr_on_s3_read_the_same_windows_as_locally(s3, tmp_path):
    import fsspec
    import zarr

    volume = np.random.default_rng(0).integers(0, 255, (2, 60, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", volume, photometric="minisblack", tile=(16, 16))
    fs = fsspec.filesystem("s3")
    fs.put(str(tmp_path / "a.tif"), "archive/em/a.tif")
    store = zarr.storage.FsspecStore.from_url("s3://archive/em/b.zarr", read_only=False)
    zarr.create_array(store, data=volume, chunks=(1, 16, 16), zarr_format=3)

    archive = open_archive("s3://archive/em")
    assert archive.image_keys() == ["a", "b"]
    for key in ("a", "b"):
        window = archive.open(key).read_window(1, slice(-5, 30), slice(40, 60))
        expected = np.pad(volume[1], 10, mode="reflect")[5:40, 50:70]
        np.testing.assert_array_equal(window[0], expected)


def test_manifest_and_mask_store_on_s3(s3):
    from pipeline.io.maskstore import MaskStore, OutputLayout
    from pipeline.manifest import NET_PASS, Manifest
    from pipeline.outputkinds import Labels

    manifest = Manifest("s3://archive/out.zarr")
    manifest.commit_states("a", NET_PASS, "fp", np.array([1, 0, 2], np.uint8), [0])
    with manifest.lock():
        assert Manifest("s3://archive/out.zarr").unit_states("a").tolist() == [1, 0, 2]
    image = open_archive("s3://archive/em").open("a")
    store = MaskStore("s3://archive/out.zarr", "labels")
    layout = OutputLayout.for_image(image, Labels(), 2, (32, 32))
    store.create_image("a", layout, {}, {})
    store.write_block("a", {"z": 0}, layout.axes, slice(0, 32), slice(0, 32), np.ones((32, 32), np.uint8))
    store.build_pyramid("a", 1)
    assert int(store.level0("a", mode="r")[0, :32, :32].sum()) == 32 * 32


# Each format's output on s3, and the file of plane 1, row 0, col 1 of image b (a chunk, or the unit's shard).
FORMATS = {
    "ngff-0.4": ({"format": "ngff-0.4", "chunks": [32, 32]}, "labels/b/0/1/0/1"),
    "ngff-0.5": ({"format": "ngff-0.5", "chunks": [16, 16], "unit": [32, 32]}, "labels/b/0/c/1/0/1"),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_submit_reads_and_writes_s3_end_to_end(s3, tmp_path, fmt):
    import ray
    import zarr

    from pipeline.driver import submit
    from pipeline.run import init_ray
    from pipeline.spec import JobSpec
    from pipeline.verify import verify_output

    (tmp_path / "model.yaml").write_text("depth: 2\nbase: 4\npadding: same\nnorm: batch\n")
    job = JobSpec.model_validate(
        {
            "name": "s3",
            "input": {"path": "s3://archive/em"},
            "model": {"config": str(tmp_path / "model.yaml")},
            "inference": {"tile": 64},
            "output": {"path": f"s3://archive/masks-{fmt}.zarr", "pyramid_levels": 1, **FORMATS[fmt][0]},
        }
    )
    unit_file = f"archive/masks-{fmt}.zarr/{FORMATS[fmt][1]}"
    ray.shutdown()
    init_ray(None)  # workers inherit the endpoint and credentials from this environment
    try:
        report = submit(job)
        assert report.status == "complete" and report.units_done == 2 * 2 * 2 * 2
        store = zarr.storage.FsspecStore.from_url(f"s3://archive/masks-{fmt}.zarr/labels/b/0", read_only=True)
        assert zarr.open_array(store, mode="r").shape == (2, 60, 50)
        fs = fsspec.filesystem("s3")
        fs.rm(unit_file)  # a bucket rule or a hand deleted one chunk (or shard)
        lost = {c.name: list(c.lost_units["net"]) for c in verify_output(job.output.path, "labels")}
        assert lost == {"a": [], "b": [5]}  # plane 1, row 0, col 1 of 2 x 2
        assert submit(job, verify=True).units_done == 1
        fs.invalidate_cache()
        assert fs.exists(unit_file)
    finally:
        ray.shutdown()


def test_the_job_lock_on_s3_refuses_a_second_run_and_is_released(s3):
    from pipeline.errors import JobLockedError
    from pipeline.manifest import Manifest

    first, second = Manifest("s3://archive/locked.zarr"), Manifest("s3://archive/locked.zarr")
    with first.lock():
        with pytest.raises(JobLockedError, match="locked by run"), second.lock():
            pass
        first.check_lock()  # still ours
    with second.lock():  # released by the first
        second.check_lock()


def s3_calls(monkeypatch) -> Counter:
    """Requests to the object store by operation (ListObjectsV2, HeadObject, GetObject...), counted as made."""
    from aiobotocore.client import AioBaseClient

    calls: Counter = Counter()
    make_call = AioBaseClient._make_api_call

    async def counted(self, operation, params):
        calls[operation] += 1
        return await make_call(self, operation, params)

    monkeypatch.setattr(AioBaseClient, "_make_api_call", counted)
    return calls


def nightly_volume(path: str, planes: int, size: int):
    import zarr

    store = zarr.storage.FsspecStore.from_url(f"s3://archive/{path}", read_only=False)
    volume = zarr.create_array(store, shape=(planes, size, size), chunks=(1, 16, 16), dtype="u1", overwrite=True)
    volume[:] = np.random.default_rng(size).integers(0, 255, (planes, size, size), dtype=np.uint8)
    return volume


def nightly_job(tmp_path, archive: str, output: str):
    from pipeline.spec import JobSpec

    (tmp_path / "model.yaml").write_text("depth: 2\nbase: 4\npadding: same\nnorm: batch\n")
    return JobSpec.model_validate(
        {
            "name": "nightly",
            "input": {"path": f"s3://archive/{archive}"},
            "model": {"config": str(tmp_path / "model.yaml")},
            "inference": {"tile": 64},
            "output": {"path": f"s3://archive/{output}", "format": "ngff-0.4", "chunks": [32, 32], "pyramid_levels": 1},
        }
    )


@pytest.mark.slow  # three submits on moto: -m slow
def test_a_chunk_rewritten_on_s3_redoes_only_the_units_that_read_it(s3, tmp_path):
    import ray

    from pipeline.driver import submit
    from pipeline.run import init_ray

    volume = nightly_volume("nightly/vol.zarr", 2, 96)
    job = nightly_job(tmp_path, "nightly", "nightly-masks.zarr")
    ray.shutdown()
    init_ray(None)
    try:
        assert submit(job).units_done == 18
        volume[1, 48:64, 0:16] = 7  # one 16 px chunk of plane 1, rewritten (a new ETag)
        fsspec.filesystem("s3").invalidate_cache()
        report = submit(job)
        change = report.plan["changes"]["vol"]
        assert report.units_done == change["changed"] and 1 <= change["changed"] < 9 and change["unchanged"] >= 9
        fsspec.filesystem("s3").invalidate_cache()
        assert submit(job).plan["images_up_to_date"] == 1
    finally:
        ray.shutdown()


def test_planning_requests_do_not_grow_with_units_or_chunks(s3, tmp_path, monkeypatch):
    from pipeline.driver import submit

    requests = {}
    for size in (64, 256):  # 8 units of 32 chunks, then 128 units of 512 chunks
        nightly_volume(f"listing-{size}/vol.zarr", 2, size)
        job = nightly_job(tmp_path, f"listing-{size}", f"listing-{size}-masks.zarr")
        fsspec.filesystem("s3").invalidate_cache()
        with monkeypatch.context() as patch:
            calls = s3_calls(patch)
            report = submit(job, dry_run=True)  # plans: opens, lists and stamps every piece, writes nothing
        assert report.plan["units_total"] == 2 * (size // 32) ** 2
        requests[size] = dict(calls)
    # One listing of the array (a page holds 1,000 keys) and the archive's own scan: the same requests
    # for 16 times the units and chunks, none per chunk or per unit.
    assert requests[64] == requests[256] and requests[256]["ListObjectsV2"] < 30, requests
