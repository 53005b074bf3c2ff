"""The cluster and schedule files we ship parse, have the fields their tools require,
and run a job file that validates.  (Their tools are not here: ray up needs a cloud,
kubectl a cluster, systemd a boot; these checks are what can be checked offline.)"""

import configparser
import json
import os
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from pipeline.spec import JobSpec
from tests.conftest import ROOT

CLUSTER = ROOT / "configs" / "cluster"
SCHEDULE = ROOT / "configs" / "schedule"
CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def submitted_job(command: str) -> Path:
    """The job file of a `segment-archive submit JOB` command line, relative to the checkout."""
    words = shlex.split(command)
    job = words[words.index("submit") + 1]
    return ROOT / "jobs" / Path(job).name


def containers(pod_template: dict) -> list[dict]:
    return pod_template["template"]["spec"]["containers"]


def test_ray_cluster_launcher_yaml_satisfies_rays_own_schema():
    import ray

    schema = json.loads((Path(os.path.dirname(ray.__file__)) / "autoscaler" / "ray-schema.json").read_text())
    config = load(CLUSTER / "ray-cluster.yaml")
    jsonschema.validate(config, schema)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu_types = [t for t in types.values() if t["resources"].get("GPU")]
    assert gpu_types and all(t["max_workers"] <= config["max_workers"] for t in types.values())
    assert any(t["min_workers"] < t["max_workers"] for t in gpu_types), "GPU workers should autoscale"
    (mount,) = config["file_mounts"]
    assert any(f"pip install {mount}" in c for c in config["setup_commands"]), "the package goes on every node"


@pytest.mark.parametrize("name", ["kuberay-raycluster.yaml", "kuberay-rayjob.yaml"])
def test_kuberay_manifests_have_a_head_and_autoscaling_gpu_workers(name):
    doc = load(CLUSTER / name)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] in ("RayCluster", "RayJob")
    assert doc["metadata"]["name"]
    cluster = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert "rayStartParams" in head and containers(head)[0]["image"]
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"] and "rayStartParams" in group
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        limits = containers(group)[0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
    images = {c["image"] for g in [head, *cluster["workerGroupSpecs"]] for c in containers(g)}
    assert len(images) == 1, "head and workers must run the same image (same Ray, same package)"


def test_rayjob_runs_a_valid_job_and_tears_its_cluster_down():
    doc = load(CLUSTER / "kuberay-rayjob.yaml")
    assert doc["spec"]["entrypoint"].startswith("segment-archive submit ")
    assert doc["spec"]["shutdownAfterJobFinishes"] is True
    JobSpec.load(submitted_job(doc["spec"]["entrypoint"]))


def test_kubernetes_cronjob_creates_the_rayjob_without_overlap():
    doc = load(SCHEDULE / "kubernetes-cronjob.yaml")
    assert doc["apiVersion"] == "batch/v1" and doc["kind"] == "CronJob"
    spec = doc["spec"]
    fields = spec["schedule"].split()
    assert len(fields) == 5 and all(CRON_FIELD.match(f) for f in fields)
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    (container,) = pod["containers"]
    assert container["command"][:3] == ["kubectl", "create", "-f"]
    assert Path(container["command"][3]).name == "kuberay-rayjob.yaml"


def test_crontab_line_runs_the_nightly_job():
    (line,) = [x for x in (SCHEDULE / "crontab").read_text().splitlines() if x.strip() and not x.startswith("#")]
    fields = line.split(None, 5)
    assert all(CRON_FIELD.match(f) for f in fields[:5]), fields[:5]
    assert "segment-archive submit" in fields[5]
    JobSpec.load(submitted_job(fields[5].split("&&")[-1].split(">>")[0]))


def test_systemd_timer_starts_a_oneshot_service_that_accepts_partial():
    service = configparser.ConfigParser(strict=False)
    service.read(SCHEDULE / "segment-archive-nightly.service")
    timer = configparser.ConfigParser(strict=False)
    timer.read(SCHEDULE / "segment-archive-nightly.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert "3" in service["Service"]["SuccessExitStatus"].split()  # partial is a finished run
    JobSpec.load(submitted_job(service["Service"]["ExecStart"]))
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == "timers.target"
    # A .timer starts the .service of the same name unless it says otherwise.
    assert "Unit" not in timer["Timer"]
