"""Units streamed with retries: a unit's error and a failed stream both cost only the unfinished units."""

from pipeline.retry import windows, with_retries


def unit(col: int) -> dict:
    return {
        "key": "img0",
        "plane": 0,
        "row": 0,
        "col": col,
        "y0": 0,
        "y1": 32,
        "x0": 32 * col,
        "x1": 32 * col + 32,
        "error": "",
    }


def test_a_failed_unit_runs_again_until_it_succeeds():
    calls = []

    def stream(todo):
        calls.append([r["col"] for r in todo])
        for r in todo:
            yield {**r, "error": "flaky read" if len(calls) == 1 and r["col"] == 1 else ""}

    finished = list(with_retries([unit(0), unit(1)], stream, retries=2))
    assert calls == [[0, 1], [1]]
    assert [(row["col"], row["error"], attempts) for row, attempts in finished] == [(0, "", 1), (1, "", 2)]


def test_a_stream_that_fails_whole_reruns_only_the_units_it_had_not_finished():
    calls = []

    def stream(todo):
        calls.append([r["col"] for r in todo])
        yield {**todo[0]}
        if len(calls) == 1:
            raise KeyError("ObjectRef(00ff...)")  # as Ray Data raised it from inside its executor
        yield from todo[1:]

    finished = list(with_retries([unit(0), unit(1), unit(2)], stream, retries=1))
    assert calls == [[0, 1, 2], [1, 2]]
    assert [(row["col"], attempts) for row, attempts in finished] == [(0, 1), (1, 2), (2, 2)]
    assert not any(row["error"] for row, _ in finished)


def test_units_a_stream_never_finishes_are_quarantined_naming_their_block():
    def stream(todo):
        raise RuntimeError("raylet died")
        yield  # a generator, as Ray Data's iter_rows

    finished = list(with_retries([unit(0), unit(1)], stream, retries=2))
    assert [attempts for _, attempts in finished] == [3, 3]
    assert finished[1][0]["error"] == "img0 plane 0 block (0, 1): unexpected RuntimeError: raylet died"


def test_windows_cut_a_stream_of_rows_into_lists():
    assert list(windows(iter(range(5)), 2)) == [[0, 1], [2, 3], [4]]
