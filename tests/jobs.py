"""Small archives and job files for the tests that run `submit`, and what they should produce."""

from pathlib import Path

import numpy as np
import tifffile
import zarr

from pipeline.io import open_archive
from pipeline.jobrecords import MANIFEST, OBJECTS, RECORDS_SUFFIX
from pipeline.manifest import NET_PASS, Manifest
from pipeline.outcome import UnitState
from pipeline.predict import predict_image
from pipeline.runtime import load_model
from pipeline.spec import JobSpec

MODEL = "in_channels: 1\nclasses: 2\ndepth: 2\nbase: 4\npadding: same\nnorm: batch\nhead: softmax\n"


def make_archive(folder: Path, sizes=((70, 90), (45, 33)), seed=0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        tifffile.imwrite(
            folder / f"img{i}.tif", rng.integers(0, 255, (2, h, w), dtype=np.uint8), photometric="minisblack"
        )
    return folder


# make_job sections for the same 32 px work units in each output format: a chunk, or a shard of four.
FORMATS = {
    "ngff-0.4": {"chunks": (32, 32)},
    "ngff-0.5": {"format": "ngff-0.5", "chunks": (16, 16), "unit": (32, 32)},
}


def make_job(tmp_path: Path, archive: Path, **sections) -> Path:
    (tmp_path / "model.yaml").write_text(MODEL)
    kind = sections.get("kind", "labels")
    instances = f", instances: {sections['instances']}" if "instances" in sections else ""
    # ngff-0.4 unless asked: its unit is the chunk, which most tests size; ngff-0.5's is a shard of chunks.
    # format=None leaves it out of the job file (the default: a store's own format, else ngff-0.5).
    if sections.get("format", "ngff-0.4"):
        instances += f", format: {sections.get('format', 'ngff-0.4')}"
    if "unit" in sections:
        instances += f", unit: {list(sections['unit'])}"
    text = f"""\
name: test-job
input: {{path: {archive}}}
model: {{config: {tmp_path / "model.yaml"}, seed: 3}}
inference: {{tile: {sections.get("tile", 64)}, batch_size: {sections.get("batch_size", 2)}}}
output: {{path: {tmp_path / "out.zarr"}, kind: {kind}, chunks: {list(sections.get("chunks", (32, 32)))}, pyramid_levels: 1{instances}}}
resources: {{actors: {sections.get("actors", 1)}, cpus_per_actor: 1, io: {sections.get("io", "auto")}}}
"""
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def expected_outputs(job: JobSpec) -> dict:
    """predict_image on every plane of every image: the single-process definition."""
    model = load_model(job.model.checkpoint, job.model.config, job.model.seed)
    archive = open_archive(job.input.path)
    result = {}
    for key in archive.image_keys():
        image = archive.open(key)
        h, w = image.plane_shape
        planes = [image.read(p, slice(0, h), slice(0, w)).astype(np.float32) / 255 for p in range(image.n_planes)]
        result[key] = np.stack([predict_image(model, p, tile=job.inference.tile, device="cpu") for p in planes])
    return result


def stored(job: JobSpec, key: str, group: str | None = None) -> np.ndarray:
    group = group or ("probabilities" if job.output.kind == "probabilities" else "labels")
    return zarr.open_array(f"{job.output.path}/{group}/{key}/0", mode="r")[:]


def records(out: Path) -> Path:
    """The job's records beside the store `out` (pipeline.jobrecords)."""
    return Path(str(out) + RECORDS_SUFFIX)


def manifest_dir(out: Path) -> Path:
    return records(out) / MANIFEST


def store_bytes(path: Path) -> dict[str, bytes]:
    """Every file that must be byte-identical between runs: the store's, and the object tables beside it
    (not the manifest, not the run reports)."""
    tables = records(path) / OBJECTS
    files = [p for folder in (path, tables) if folder.exists() for p in sorted(folder.rglob("*")) if p.is_file()]
    return {str(p.relative_to(path.parent)): p.read_bytes() for p in files}


def committed_units(out: Path, pass_name: str = NET_PASS) -> set[tuple[str, int]]:
    """(image folder, unit number) of every unit whose committed state is finished."""
    manifest = Manifest(str(out))
    units = set()
    for folder in manifest.state_folders(pass_name):
        states = manifest.folder_unit_states(folder, pass_name)
        finished = (states == UnitState.DONE) | (states == UnitState.SKIPPED)
        units |= {(folder, int(i)) for i in np.flatnonzero(finished)}
    return units


def unit_chunk(out: Path, group: str, key: str, index: int, shape: tuple[int, int], chunk: int = 32) -> Path:
    """The level-0 chunk file of unit `index` of a 3-D (z, y, x) test image; probabilities have a c axis first."""
    rows, cols = -(-shape[0] // chunk), -(-shape[1] // chunk)
    plane, rest = divmod(index, rows * cols)
    row, col = divmod(rest, cols)
    channel = ["0"] if group == "probabilities" else []
    return out.joinpath(group, key, "0", *channel, str(plane), str(row), str(col))


def rewritten_after(snapshots: list[tuple[float, set[tuple[str, int]]]], chunk_of) -> int:
    """Units committed by a snapshot's time whose output chunk was written again afterwards: recomputed."""
    recomputed = set()
    for when, units in snapshots:
        for unit in units:
            path = chunk_of(*unit)
            if path.exists() and path.stat().st_mtime > when:  # a chunk of pure fill value is never written
                recomputed.add(unit)
    return len(recomputed)
