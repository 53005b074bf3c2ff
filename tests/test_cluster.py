"""A multi-node Ray cluster on this machine: submit with --address, and lose a node mid-job."""

import threading
import time

import numpy as np
import pytest
import zarr

from pipeline.driver import submit
from pipeline.spec import JobSpec
from tests.jobs import expected_outputs, make_archive, make_job, manifest_dir


@pytest.fixture
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    workers = [c.add_node(num_cpus=2), c.add_node(num_cpus=2)]
    c.wait_for_nodes()
    yield c, workers
    ray.shutdown()
    c.shutdown()


def _with_address(job: JobSpec, address: str) -> JobSpec:
    return job.model_copy(update={"resources": job.resources.model_copy(update={"address": address, "actors": 2})})


def test_submit_to_a_three_node_cluster_and_survive_losing_a_node(cluster, tmp_path):
    c, workers = cluster
    archive = make_archive(tmp_path / "in", sizes=((96, 96), (80, 64), (64, 64)))
    job = _with_address(JobSpec.load(make_job(tmp_path, archive, chunks=(16, 16))), c.address)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(report=submit(job)))
    thread.start()
    units = manifest_dir(tmp_path / "out.zarr") / "states"
    deadline = time.time() + 240
    while time.time() < deadline and not (units.exists() and any(units.rglob("*.u8"))):
        time.sleep(0.2)
    c.remove_node(workers[0])  # a node dies while units are in flight
    thread.join(timeout=300)  # the job takes ~15 s; a stream that hangs after the loss fails here
    assert not thread.is_alive()
    report = result["report"]
    assert report.status == "complete" and report.units_done == report.plan["units_total"]
    for key, probabilities in expected_outputs(job).items():
        stored = zarr.open_array(f"{job.output.path}/labels/{key}/0", mode="r")[:]
        np.testing.assert_array_equal(stored, probabilities.argmax(axis=1).astype(np.uint8))


def test_a_job_without_an_address_gets_its_own_local_ray_beside_a_running_cluster(cluster):
    import ray

    from pipeline.run import init_ray

    ray.shutdown()
    init_ray(None)  # ray.init() alone would join the cluster (and refuse num_cpus)
    try:
        assert len(ray.nodes()) == 1
    finally:
        ray.shutdown()
