"""Stage helpers: the empty-block rule, background blocks, and outputs per kind."""

import numpy as np

from pipeline.outputkinds import Instances, Labels, Mask, Probabilities
from pipeline.outputspec import InstancesSpec
from pipeline.stages import StageContext, background, is_flat


def test_a_block_is_flat_only_when_every_channel_is():
    flat = np.full((2, 16, 16), 0.5, np.float32)
    assert is_flat(flat, 0.01, 4)
    textured = flat.copy()
    textured[1, ::4, ::4] = np.linspace(0, 1, 16).reshape(4, 4)
    assert not is_flat(textured, 0.01, 4)


def test_texture_between_samples_is_not_seen():
    """The rule is a sample: detail finer than the stride can be missed (documented)."""
    stripes = np.zeros((1, 16, 16), np.float32)
    stripes[:, 1::4, :] = 1
    assert is_flat(stripes, 0.01, 4) and not is_flat(stripes, 0.01, 1)


def context(output=None, **changes) -> StageContext:
    return StageContext(
        input_url="in", axes=None, stack=False, output_url="out", output=output or Labels(), geometry=None,
        tile=64, batch_size=1, nonfinite="reject", checkpoint=None, config=None, seed=0, device="cpu",
        precision="fp32", **changes,
    )  # fmt: skip


def test_background_is_class_zero_in_every_kind():
    assert background(2, (3, 4), context(Labels())).tolist() == [[0] * 4] * 3
    probabilities = background(3, (2, 2), context(Probabilities("float16")))
    assert probabilities.dtype == np.float16 and (probabilities[0] == 1).all() and (probabilities[1:] == 0).all()
    assert (background(1, (2, 2), context(Probabilities())) == 0).all()  # one sigmoid class: p(foreground) = 0
    assert (background(1, (2, 2), context(Mask())) == 0).all()
    cells = background(2, (2, 2), context(Instances(InstancesSpec(objects="background"))))
    assert cells.shape == (1, 2, 2) and (cells == 1).all()  # membrane model: empty resin is "cell"


def a_row() -> dict:
    from pipeline.rows import fresh_columns

    return {"key": "a.tif", "plane": 0, "row": 1, "col": 2, **fresh_columns()}


def failing(times: int, exc: Exception):
    calls = []

    def work():
        calls.append(1)
        if len(calls) <= times:
            raise exc

    return work, calls


def test_a_transient_failure_is_tried_again_in_place_until_it_passes(monkeypatch):
    from pipeline import stages

    monkeypatch.setattr(stages, "retry_pause", lambda attempt: 0)
    row = a_row()
    work, calls = failing(2, OSError("flaky read"))
    stages.attempted([row], work, retries=2)
    assert (len(calls), row["error"], row["attempts"]) == (3, "", 3)


def test_a_transient_failure_past_the_retries_is_recorded_with_its_kind(monkeypatch):
    from pipeline import stages

    monkeypatch.setattr(stages, "retry_pause", lambda attempt: 0)
    row = a_row()
    work, calls = failing(5, OSError("still down"))
    stages.attempted([row], work, retries=1)
    assert len(calls) == 2 and row["failure"] == "transient" and row["attempts"] == 2
    assert row["error"] == "a.tif plane 0 block (1, 2): unexpected OSError: still down"


def test_bad_input_is_not_tried_again():
    from pipeline.errors import InputError
    from pipeline.stages import attempted

    row = a_row()
    work, calls = failing(1, InputError("a.tif: truncated strip"))
    attempted([row], work, retries=5)
    assert len(calls) == 1 and row["failure"] == "input" and row["error"].endswith("a.tif: truncated strip")


def test_a_batch_that_fails_whole_records_the_failure_on_each_of_its_units():
    from pipeline.errors import InputError
    from pipeline.stages import attempted

    rows = [a_row(), {**a_row(), "col": 3}]
    work, calls = failing(1, InputError("model input of the wrong shape"))
    attempted(rows, work, retries=2)
    assert len(calls) == 1 and [r["failure"] for r in rows] == ["input", "input"]
    assert rows[1]["error"].startswith("a.tif plane 0 block (1, 3): ")
