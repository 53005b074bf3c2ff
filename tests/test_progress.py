"""Progress a person can follow: a bar on a terminal, a line every so often in a log."""

import io

from pipeline.progress import progress_lines, unit_progress


def test_without_a_terminal_progress_is_a_line_every_so_often_and_one_at_the_end():
    log = io.StringIO()
    hook = progress_lines(log, every=3600)
    hook(0, 10, 0.0)  # before Ray starts: the total is known from the plan
    for done in range(1, 10):
        hook(done, 10, done * 0.25)  # within the hour: no line
    hook(10, 10, 2.5)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("progress: 0/10 units (0%)")
    assert lines[1].startswith("progress: 10/10 units (100%)") and "Mpx/s" in lines[1] and "eta" in lines[1]


def test_each_phase_has_its_own_count_and_clock():
    log = io.StringIO()
    hook = progress_lines(log, every=3600)
    hook(0, 4, 0.0)
    hook(4, 4, 1.0)
    hook(0, 6, 0.0, "instance blocks summarised")  # the instance pass starts its own line
    hook(6, 6, 1.5, "instance blocks summarised")
    lines = [line.split(",")[0] for line in log.getvalue().splitlines()]
    assert lines == [
        "progress: 0/4 units (0%)",
        "progress: 4/4 units (100%)",
        "progress: 0/6 instance blocks summarised (0%)",
        "progress: 6/6 instance blocks summarised (100%)",
    ]


def test_quiet_means_no_hook_at_all():
    with unit_progress(enabled=False) as hook:
        assert hook is None


def test_the_hook_chosen_follows_the_terminal():
    with unit_progress(terminal=False) as hook:
        assert hook is not None and hook.__qualname__.startswith("progress_lines")
    with unit_progress(terminal=True) as hook:
        assert hook is not None and hook.__qualname__.startswith("unit_progress")
