"""auditlog.db.request_guard: a budget over a request's database waits, and one request at a
time during a suspected outage."""

import threading

import pytest
from django.db import OperationalError

from auditlog.db.request_guard import LAST_CHANCE_SECONDS, SLOW_LOSS_SECONDS, RequestGuard


def in_other_thread(call):
    outcome = []

    def run():
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    return outcome[0]


def suspecting() -> RequestGuard:
    guard = RequestGuard()
    guard.begin(8)
    guard.extend(-SLOW_LOSS_SECONDS)  # as if it had waited that long for the database
    guard.end(failed=True, lost=True)
    assert guard.suspected
    return guard


def test_without_an_outage_every_request_uses_the_database():
    guard = RequestGuard()
    guard.begin(8)

    guard.enter_database()
    assert in_other_thread(lambda: (guard.begin(8), guard.enter_database())) == (None, None)


def test_a_lost_connection_gives_one_request_the_turn_and_refuses_the_others():
    guard = suspecting()
    guard.begin(8)
    guard.enter_database()
    guard.enter_database()  # the same request again: it holds the turn

    refused = in_other_thread(lambda: (guard.begin(8), guard.enter_database()))

    assert isinstance(refused, OperationalError)


def test_a_trial_that_gets_through_ends_the_suspicion():
    guard = suspecting()
    guard.begin(8)
    guard.enter_database()
    guard.end(failed=False, lost=False)

    assert not guard.suspected


def test_a_trial_the_database_fails_keeps_the_suspicion_and_frees_the_turn():
    guard = suspecting()
    guard.begin(8)
    guard.enter_database()
    guard.end(failed=True, lost=False)  # a PoolTimeout, say: it proves nothing

    assert guard.suspected
    assert in_other_thread(lambda: (guard.begin(8), guard.enter_database())) == (None, None)


def test_a_request_that_never_uses_the_database_neither_holds_the_turn_nor_ends_the_suspicion():
    guard = suspecting()
    guard.begin(8)  # a 401, a slow upload ...
    guard.end(failed=False, lost=False)

    assert guard.suspected
    assert in_other_thread(lambda: (guard.begin(8), guard.enter_database())) == (None, None)


def test_threads_outside_a_request_are_neither_gated_nor_budgeted():
    guard = suspecting()

    guard.enter_database()  # a command, the readiness probe
    assert guard.wait_bound(4.0) == 4.0
    assert guard.wait_bound(None) is None


def test_a_wait_gets_what_is_left_of_the_budget():
    guard = RequestGuard()
    guard.begin(2.0)

    assert guard.wait_bound(4.0) == pytest.approx(2.0, abs=0.1)
    assert guard.wait_bound(1.0) == 1.0
    guard.extend(-5)  # as if 5 s of waits were spent
    assert guard.wait_bound(4.0) == LAST_CHANCE_SECONDS


def test_a_connection_lost_at_once_is_no_outage():
    """A killed backend or a restarting server fails fast: nothing to protect the queue from."""
    guard = RequestGuard()
    guard.begin(8)
    guard.end(failed=True, lost=True)

    assert not guard.suspected


def test_after_a_fork_the_guard_every_module_imported_starts_afresh():
    from auditlog.db import request_guard as module
    from auditlog.db.postgresql import base

    guard = module.request_guard
    guard.begin(8)
    guard.extend(-SLOW_LOSS_SECONDS)
    guard.end(failed=True, lost=True)
    guard.begin(8)
    guard.enter_database()  # holds the turn
    try:
        module._forget_after_fork()

        assert base.request_guard is module.request_guard is guard
        assert not guard.suspected
        guard.begin(8)
        guard.enter_database()
    finally:
        guard.end(failed=False, lost=False)
        module._forget_after_fork()
