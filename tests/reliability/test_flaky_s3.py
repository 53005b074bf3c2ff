"""An object store that answers 503 Slow Down (and 500) to a share of requests:
s3fs/botocore retry, and the job ends with the reference's bytes."""

import http.client
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import tifffile

from tests.reliability.conftest import differing_bytes

pytest.importorskip("moto")
pytest.importorskip("s3fs")
pytestmark = pytest.mark.reliability

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class FlakyProxy(ThreadingHTTPServer):
    """Forwards to moto; answers 503 or 500 instead, with probability `rate`, `budget` times."""

    daemon_threads = True

    def __init__(self, upstream: tuple[str, int], rate: float, budget: int, seed: int) -> None:
        super().__init__(("127.0.0.1", 0), FlakyHandler)
        self.upstream, self.rate, self.budget = upstream, rate, budget
        self.rng, self.lock = random.Random(seed), threading.Lock()
        self.failed = {500: 0, 503: 0}
        self.requests = 0

    def fail_now(self) -> int:
        with self.lock:
            self.requests += 1
            if sum(self.failed.values()) >= self.budget or self.rng.random() >= self.rate:
                return 0
            status = 503 if self.rng.random() < 0.75 else 500
            self.failed[status] += 1
            return status


class FlakyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _forward(self) -> None:
        body = self._body()
        status = self.server.fail_now()
        if status:
            code = "SlowDown" if status == 503 else "InternalError"
            payload = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        upstream.request(self.command, self.path, body=body or None, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status, response.reason)
        for k, v in response.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                self.send_header(k, v)
        # A HEAD answer has no body but tells the object's size: keep moto's length.
        length = response.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


@pytest.fixture
def flaky_s3(monkeypatch):
    import boto3
    import fsspec.config
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    proxy = FlakyProxy(server.get_host_and_port(), rate=0.08, budget=25, seed=3)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.server_address[1]}",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    fsspec.config.conf.clear()
    fsspec.config.set_conf_env(fsspec.config.conf)
    host, port = server.get_host_and_port()
    boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket="archive")
    yield proxy
    fsspec.config.conf.clear()
    proxy.shutdown()
    server.stop()


def s3_store_bytes(url: str) -> dict[str, bytes]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)  # the store holds results only: its records lie beside it
    return {path[len(root) :]: fs.cat_file(path) for path in fs.find(root) if path.startswith(root + "/")}


@pytest.mark.slow
def test_submit_on_s3_survives_503_and_500_answers(flaky_s3, tmp_path, figures):
    import fsspec
    import ray

    from pipeline.driver import submit
    from pipeline.run import init_ray
    from pipeline.spec import JobSpec

    fs = fsspec.filesystem("s3")
    rng = np.random.default_rng(0)
    for i in range(2):
        tifffile.imwrite(tmp_path / f"{i}.tif", rng.integers(0, 255, (96, 80), dtype=np.uint8))
        fs.put(str(tmp_path / f"{i}.tif"), f"archive/em/{i}.tif")
    (tmp_path / "model.yaml").write_text("depth: 2\nbase: 4\npadding: same\nnorm: batch\n")

    def job(output: str) -> JobSpec:
        return JobSpec.model_validate(
            {
                "name": "s3",
                "input": {"path": "s3://archive/em"},
                "model": {"config": str(tmp_path / "model.yaml")},
                "inference": {"tile": 64},
                "output": {"path": output, "chunks": [32, 32], "pyramid_levels": 1},
                "resources": {"retries": 4},
            }
        )

    budget = flaky_s3.budget
    flaky_s3.budget = 0  # the reference run sees a healthy store
    ray.shutdown()
    init_ray(None)  # workers inherit the proxy endpoint from this environment
    try:
        assert submit(job("s3://archive/ref.zarr")).status == "complete"
        flaky_s3.budget = budget
        report = submit(job("s3://archive/flaky.zarr"))
    finally:
        ray.shutdown()
    flaky_s3.budget = 0
    failed = sum(flaky_s3.failed.values())
    differing = differing_bytes(s3_store_bytes("s3://archive/flaky.zarr"), s3_store_bytes("s3://archive/ref.zarr"))
    figures["faults_injected"] += failed
    figures["bytes_differing"] += differing
    assert report.status == "complete", report.units_quarantined
    assert failed >= 5, f"only {failed} of {flaky_s3.requests} requests failed: the proxy was not in the path"
    assert differing == 0
