"""auditlog.outage: after a lost connection, one request at a time tries the database."""

from auditlog.outage import DatabaseOutage


def test_no_outage_lets_every_request_through():
    outage = DatabaseOutage()

    assert [outage.admit(), outage.admit()] == [None, None]


def test_a_lost_connection_admits_one_trial_and_refuses_the_rest():
    outage = DatabaseOutage()
    outage.finished(None, failed=True, lost=True)

    assert outage.admit() is True
    assert outage.admit() is False
    assert outage.admit() is False


def test_a_failed_trial_keeps_the_suspicion_and_frees_the_next_trial():
    outage = DatabaseOutage()
    outage.finished(None, failed=True, lost=True)
    outage.finished(outage.admit(), failed=True, lost=True)

    assert outage.admit() is True


def test_a_trial_that_gets_through_ends_the_suspicion():
    outage = DatabaseOutage()
    outage.finished(None, failed=True, lost=True)
    outage.finished(outage.admit(), failed=False, lost=False)

    assert [outage.admit(), outage.admit()] == [None, None]


def test_a_trial_the_database_fails_another_way_keeps_the_suspicion():
    """A trial that got no pooled connection in time (PoolTimeout) proves nothing."""
    outage = DatabaseOutage()
    outage.finished(None, failed=True, lost=True)
    outage.finished(outage.admit(), failed=True, lost=False)

    assert outage.admit() is True
    assert outage.admit() is False
