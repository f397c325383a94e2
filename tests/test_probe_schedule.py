"""When a probe measures (``schedule.Schedule.plan``), a pure function of the step counter, tested alone."""

import pytest

from gradientflow.probes.schedule import Schedule


def _run(schedule: Schedule, steps: int, flushes=()) -> list:
    """Follow the plans as a probe does: the counters it keeps, and a window closed by hand at ``flushes``."""
    sampled, window_heavy, window_start, plans = 0, False, 1, []
    for step in range(steps):
        if step in flushes:
            window_heavy, window_start = False, step + 1
        plan = schedule.plan(step, sampled, window_heavy, step >= window_start)
        if plan.close:
            window_heavy, window_start = False, step + 1
        if plan.measure:
            sampled += 1
            window_heavy |= plan.heavy
        plans.append(plan)
    return plans


def test_every_kth_step_is_sampled_the_first_always():
    plans = _run(Schedule(every=3), 10)
    assert [s for s, p in enumerate(plans) if p.measure] == [0, 3, 6, 9]
    assert not any(p.heavy for p in plans if not p.measure)


def test_heavy_steps_are_each_windows_first_and_every_update_every_th():
    plans = _run(Schedule(every=1, update_every=4, window=6), 14)
    # sampled steps counted from 0: 0, 4, 8, 12 by update_every; 6 and 12 open a window
    assert [s for s, p in enumerate(plans) if p.heavy] == [0, 4, 6, 8, 12]
    assert [s for s, p in enumerate(plans) if p.close] == [6, 12]
    assert all(p.heavy for p in _run(Schedule(every=2, update_every=4, exact=True), 8) if p.measure)


def test_a_window_closed_by_hand_makes_the_next_sampled_step_heavy_and_an_empty_window_never_closes():
    plans = _run(Schedule(update_every=10, window=4), 9, flushes=(3, 4))
    assert [s for s, p in enumerate(plans) if p.heavy] == [0, 3, 4, 8]
    assert [s for s, p in enumerate(plans) if p.close] == [8]  # step 4 closed nothing: the window was empty


@pytest.mark.parametrize("every,update_every", [(1, 1), (1, 10), (2, 3), (5, 2)])
def test_the_weights_are_copied_one_step_before_every_update_every_th_sampled_step(every, update_every):
    plans = _run(Schedule(every=every, update_every=update_every), 61)
    sampled = [s for s, p in enumerate(plans) if p.measure]
    measured = [sampled[i] for i in range(update_every - 1, len(sampled), update_every)]
    assert [s + 1 for s, p in enumerate(plans[:60]) if p.snapshot] == [m for m in measured if m > 0]  # none before 0
    assert not any(p.snapshot for p in _run(Schedule(every=every, update_every=update_every, updates=False), 60))
