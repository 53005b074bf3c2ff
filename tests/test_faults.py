"""pipeline.faults: named points that do nothing until a test installs a hook."""

import pytest

from pipeline import faults


def test_a_point_without_hooks_does_nothing():
    faults.inject("read")


def test_an_installed_hook_sees_each_point_with_its_facts_until_uninstalled():
    seen = []

    def hook(point, **facts):
        seen.append((point, facts))

    faults.install(hook)
    try:
        faults.inject("commit", units=5)
        faults.inject("write_attempt")
    finally:
        faults.uninstall(hook)
    faults.inject("read")
    assert seen == [("commit", {"units": 5}), ("write_attempt", {})]


def test_a_hook_that_raises_fails_the_pipeline_at_that_point():
    def full_disk(point, **facts):
        if point == "write_attempt":
            raise OSError(28, "No space left on device")

    faults.install(full_disk)
    try:
        faults.inject("read")
        with pytest.raises(OSError, match="No space"):
            faults.inject("write_attempt")
    finally:
        faults.uninstall(full_disk)


def test_every_point_the_pipeline_passes_is_documented():
    import inspect
    import re

    from pipeline import committer, stages

    source = inspect.getsource(stages) + inspect.getsource(committer)
    assert set(re.findall(r'inject\("(\w+)"', source)) == set(faults.POINTS)
