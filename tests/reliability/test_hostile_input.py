"""A corpus of bad and hostile input in one archive beside good images: each bad item is
refused with a message naming it, nothing is executed, and the good images are segmented."""

import json
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.errors import ExitCode, InputError
from pipeline.io.archive import check_key
from tests.jobs import make_job, records

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("local_ray")]


def bomb_tiff(path: Path, side: int = 200_000) -> None:
    """A 200 bytes TIFF whose one deflate strip claims side x side pixels (40 GB decoded)."""
    strip = zlib.compress(bytes(1024))
    tags = [(256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, 8), (262, 3, 1), (273, 4, 0), (277, 3, 1)]
    tags += [(278, 4, side), (279, 4, len(strip))]
    ifd_size = 2 + 12 * len(tags) + 4
    data_offset = 8 + ifd_size
    entries = b"".join(
        struct.pack("<HHI", tag, kind, 1)
        + struct.pack(
            "<I" if kind == 4 else "<HH", *((data_offset if tag == 273 else value,) if kind == 4 else (value, 0))
        )
        for tag, kind, value in tags
    )
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags)) + entries + b"\0\0\0\0" + strip)


def build_corpus(folder: Path) -> dict[str, str]:
    """Write the corpus; returns {image key: expected outcome or message fragment}."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    tifffile.imwrite(folder / "good.tif", rng.integers(0, 255, (64, 64), dtype=np.uint8))
    tifffile.imwrite(folder / "tiny.tif", rng.integers(0, 255, (5, 7), dtype=np.uint8))
    tifffile.imwrite(folder / "thin.tif", rng.integers(0, 255, (1, 300), dtype=np.uint8))
    (folder / "empty.tif").write_bytes(b"")
    tifffile.imwrite(folder / "whole.tif", rng.integers(0, 255, (128, 128), dtype=np.uint8))
    data = (folder / "whole.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(data[: len(data) // 2])
    (folder / "whole.tif").unlink()
    bomb_tiff(folder / "bomb.tif")
    tifffile.imwrite(folder / "nan.tif", np.where(rng.random((40, 40)) < 0.01, np.nan, 0.5).astype(np.float32))
    tifffile.imwrite(folder / "complex.tif", np.zeros((16, 16), np.complex64))
    tifffile.imwrite(folder / "int64.tif", np.zeros((16, 16), np.int64))
    corrupt = zarr.create_array(str(folder / "corrupt.zarr"), shape=(128, 128), chunks=(32, 32), dtype="uint8")
    corrupt[:] = rng.integers(1, 255, (128, 128), dtype=np.uint8)
    (folder / "corrupt.zarr" / "c" / "3" / "3").write_bytes(b"\x28\xb5\x2f\xfd garbage, not zstd")
    missing = zarr.create_array(str(folder / "missing.zarr"), shape=(64, 64), chunks=(32, 32), dtype="uint8")
    missing[:] = rng.integers(1, 255, (64, 64), dtype=np.uint8)
    (folder / "missing.zarr" / "c" / "0" / "1").unlink()
    (folder / os.fsdecode(b"bad-\xff\xfe.tif")).write_bytes((folder / "good.tif").read_bytes())
    return {
        "good": "complete",
        "tiny": "complete",  # smaller than one tile: mirrored to the tile
        "thin": "complete",  # one pixel wide
        "missing": "complete",  # a missing chunk is the fill value (the Zarr spec), not an error
        "empty": "empty.tif: empty file",
        "truncated": "truncated",
        "bomb": "would decode to more than",
        "nan": "NaN/inf",
        "complex": "unsupported dtype complex64",
        "int64": "unsupported dtype int64",
        "corrupt": "Zstd decompression error",  # units whose window needs the bad chunk; the rest written
        "bad-": "not valid UTF-8",
    }


def test_corpus_quarantines_each_bad_item_by_name_and_segments_the_good(tmp_path, figures):
    expected = build_corpus(tmp_path / "in")
    result = CliRunner().invoke(main, ["submit", str(make_job(tmp_path, tmp_path / "in")), "--quiet"])
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert "Traceback" not in result.output
    report = json.loads((records(tmp_path / "out.zarr") / "run-report.json").read_text())
    reasons = {**report["images_quarantined"], **report["units_quarantined"]}
    for key, outcome in expected.items():
        if outcome == "complete":
            assert key in report["images_completed"], (key, reasons.get(key))
        else:
            messages = [m for k, m in reasons.items() if k.startswith(key)]
            assert any(outcome in m for m in messages), (key, messages)
    # Only units whose mirrored window reaches the bad chunk (bottom-right corner) fail.
    failed = {u.split(":")[1] for u in report["units_quarantined"] if u.startswith("corrupt:")}
    assert failed == {"0/2/2", "0/2/3", "0/3/2", "0/3/3"}
    assert {u.split(":")[0] for u in report["units_quarantined"]} == {"corrupt", "nan"}
    figures["bad_inputs_tried"] += len(expected) - 4 + 1  # + path traversal below


def test_path_traversal_keys_are_refused():
    for key in ("../etc/passwd", "a/../../b", "/abs/path"):
        with pytest.raises(InputError, match="not a plain relative name"):
            check_key(key, "archive")


GOOD_JOB = "name: j\ninput: {path: in}\nmodel: {config: model.yaml}\noutput: {path: out.zarr}\n"


def submit_job(tmp_path: Path, text: str, name: str = "job.yaml"):
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "model.yaml").write_text("depth: 2\nbase: 4\npadding: same\n")
    (tmp_path / name).write_text(text)
    return CliRunner().invoke(main, ["submit", str(tmp_path / name), "--quiet"])


def pickle_bomb(marker: Path) -> bytes:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps({"state_dict": Payload()})


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("alias-bomb", "job.yaml:2: YAML aliases (*name) are not allowed"),
        ("unknown-key", "job.yaml:5: resources.gpu"),
        ("python-tag", "is not allowed"),
        ("pickle-checkpoint", "model.pt"),
        ("mismatched-checkpoint", "model.safetensors"),
    ],
)
def test_hostile_job_files_and_checkpoints_are_refused_without_running_anything(tmp_path, case, message, figures):
    marker = tmp_path / "pwned"
    if case == "alias-bomb":
        text = 'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b]\n'
    elif case == "unknown-key":
        text = GOOD_JOB + "resources: {gpu: 1}\n"
    elif case == "python-tag":
        text = GOOD_JOB.replace("name: j", f"name: !!python/object/apply:os.system ['touch {marker}']")
    elif case == "pickle-checkpoint":
        (tmp_path / "model.pt").write_bytes(pickle_bomb(marker))
        text = GOOD_JOB.replace("config: model.yaml", "checkpoint: model.pt")
    else:
        from pipeline.model import UNet, UNetConfig, save_checkpoint

        save_checkpoint(UNet(UNetConfig(depth=2, base=4)), tmp_path / "model.safetensors")
        from safetensors.numpy import load_file, save_file

        tensors = load_file(tmp_path / "model.safetensors")
        name = next(iter(tensors))
        tensors[name] = np.zeros((3, 3), np.float32)  # weights that fit no config
        header = json.loads(
            (tmp_path / "model.safetensors").read_bytes()[8:][
                : struct.unpack("<Q", (tmp_path / "model.safetensors").read_bytes()[:8])[0]
            ]
        )
        save_file(tensors, tmp_path / "model.safetensors", metadata=header["__metadata__"])
        text = GOOD_JOB.replace("config: model.yaml", "checkpoint: model.safetensors")
    result = submit_job(tmp_path, text)
    assert result.exit_code == ExitCode.INVALID, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not marker.exists() and not (tmp_path / "out.zarr").exists()
    figures["bad_inputs_tried"] += 1
