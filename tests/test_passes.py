"""pipeline.passes.streamed: a stream that fails as a whole runs again over what is left, after a restart."""

from pipeline.outcome import FailureKind, UnitState
from pipeline.passes import streamed
from pipeline.plan import UnitGrid
from pipeline.rows import ImageRows

ROWS = ImageRows(UnitGrid("a", 1, (64, 96), (32, 32)), "fp", "yx", 1.0, 0.0)  # 6 units


def flaky_stream(fail_first: int, events: list[str]):
    """A stream of the units not yet delivered, whose first `fail_first` attempts fail before their
    first unit (the very first after one)."""
    delivered: set[int] = set()

    def stream():
        events.append("stream")
        for index in range(6):
            if index in delivered:
                continue
            if events.count("stream") <= fail_first and delivered:
                raise ConnectionError("a node was lost")
            delivered.add(index)
            yield ROWS.row(index)

    def leftovers():
        return (ROWS.row(i) for i in range(6) if i not in delivered)

    return stream, leftovers


def test_a_failed_stream_runs_again_after_a_restart_and_delivers_each_unit_once():
    events: list[str] = []
    stream, leftovers = flaky_stream(fail_first=2, events=events)
    outcomes = list(streamed(stream, 3, leftovers, restart=lambda: events.append("restart")))
    assert events == ["stream", "restart", "stream", "restart", "stream"]  # no restart before the first
    assert sorted(o.index for o in outcomes) == list(range(6))
    assert {o.state for o in outcomes} == {UnitState.DONE}


def test_units_left_when_the_retries_are_spent_fail_as_transient_with_the_streams_error():
    events: list[str] = []
    stream, leftovers = flaky_stream(fail_first=5, events=events)
    outcomes = list(streamed(stream, 1, leftovers, restart=lambda: events.append("restart")))
    assert events == ["stream", "restart", "stream"]
    failed = [o for o in outcomes if o.failure]
    assert len(outcomes) == 6 and len(failed) == 5  # the first attempt delivered one unit
    assert {o.failure.kind for o in failed} == {FailureKind.TRANSIENT.value}
    assert all("a node was lost" in o.failure.error for o in failed)
