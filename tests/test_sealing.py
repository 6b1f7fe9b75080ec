"""Append-only triggers, sealing, verification and purge, on the suite's database.

Everything here runs as the maintenance role, the tables' owner (on PostgreSQL with two roles):
it is the role that seals and purges, and the one the triggers stop from changing the trail by
mistake. What the runtime role can and cannot do is tests/test_roles.py.
"""

import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.models import ActionLog, EventSeal, SealAnchor, SealBlock
from auditlog.trail import sealing
from auditlog.trail.append_only import (
    GUARDED_TABLES,
    SQLITE_TRIGGERS,
    delete_permit_grant,
    delete_permit_revoke,
)
from auditlog.trail.retention import events_purge, events_purge_plan
from tests.conftest import EVENTS_URL, make_event

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("maintenance_role")]

TABLE = ActionLog._meta.db_table


@pytest.fixture(autouse=True)
def seal_settings(settings):
    settings.AUDITLOG_SEAL_KEY = "current-seal-key"
    settings.AUDITLOG_SEAL_OLD_KEYS = []
    settings.AUDITLOG_SEAL_DELAY_SECONDS = 0
    return settings


@pytest.fixture
def trail():
    call_command("auditlog_demo", "--count", "3000", "--seed", "5", stdout=io.StringIO())
    return sorted(ActionLog.objects.values_list("id", flat=True))


def sql(statement, params=None):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def without_triggers():
    """What the tables' owner can do (rolled back with the test): turn every guard off."""
    if connection.vendor == "postgresql":
        sql("SET CONSTRAINTS ALL IMMEDIATE")  # this test's inserts left deferred FK checks pending
        for table in GUARDED_TABLES:
            sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    else:
        for trigger in SQLITE_TRIGGERS:
            sql(f"DROP TRIGGER {trigger}")


def verify():
    return sealing.chain_verify()


def forge_event(event_id):
    forged_uuid = uuid.UUID(int=event_id)
    sql(
        f"INSERT INTO {TABLE} (id, uuid, occurred_at, received_at, actor_id, actor_type, actor_name, action, "
        "target_type, target_id, target_name, outcome, ip_address, user_agent, metadata, source_id, "
        "idempotency_key, payload_hash) "
        "SELECT %s, %s, occurred_at, received_at, 'mallory', 'user', '', 'user.login', '', '', '', "
        f"'success', NULL, '', metadata, source_id, NULL, 'x' FROM {TABLE} "
        f"WHERE id = (SELECT MIN(id) FROM {TABLE})",
        [event_id, str(forged_uuid) if connection.vendor == "postgresql" else forged_uuid.hex],
    )


# --- append-only ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [f"UPDATE {TABLE} SET action = 'x'", f"UPDATE {TABLE} SET metadata = '{{}}'", f"DELETE FROM {TABLE}"],
)
def test_raw_sql_cannot_rewrite_events(trail, statement):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        sql(statement)

    assert ActionLog.objects.count() == 3000


def test_the_orm_cannot_rewrite_events_either(trail):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ActionLog.objects.filter(id=trail[0]).update(action="x")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ActionLog.objects.filter(id=trail[0]).delete()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="TRUNCATE is PostgreSQL's")
def test_truncate_is_refused(trail):
    sql("SET CONSTRAINTS ALL IMMEDIATE")  # this test's inserts left deferred FK checks pending
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        sql(f"TRUNCATE {TABLE} CASCADE")


def test_the_purge_permit_lets_delete_through_in_its_transaction(trail):
    with sqlite_writer_queue(), transaction.atomic():
        delete_permit_grant("test")
        ActionLog.objects.filter(id=trail[0]).delete()
        delete_permit_revoke()

    assert not ActionLog.objects.filter(id=trail[0]).exists()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ActionLog.objects.filter(id=trail[1]).delete()  # the permit went with its transaction


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no transaction ids")
@pytest.mark.django_db(transaction=True)
def test_a_committed_permit_permits_nothing(trail):
    """A permit counts only in the transaction that wrote it: one left behind by a commit
    (a crash between grant and revoke cannot do it, a hand-written INSERT can) is void."""
    with transaction.atomic():
        delete_permit_grant("left behind")
    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
        ActionLog.objects.filter(id=trail[0]).delete()
    with transaction.atomic():
        delete_permit_revoke()


def test_seal_tables_refuse_change_and_removal_without_a_permit(trail):
    sealing.events_seal(block_size=1000)
    events_purge(events_purge_plan(older_than_days=30), batch_size=1000)  # an anchor exists
    refused = [
        (EventSeal, "update", {"chain_hash": "0" * 64}),
        (EventSeal, "delete", {}),
        (SealBlock, "update", {"event_count": 1}),
        (SealBlock, "delete", {}),
        (SealAnchor, "update", {"purged_count": 0}),
        (SealAnchor, "delete", {}),
    ]
    for model, operation, values in refused:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            getattr(model.objects.all(), operation)(**values)
    with pytest.raises(DatabaseError, match="append-only: INSERT refused"), transaction.atomic():
        SealAnchor.objects.create(
            purged_through_event_id=1, chain_hash="0" * 64, purged_count=1, key_id="k", mac="m"
        )

    assert verify().problem is None


# --- sealing ----------------------------------------------------------------------------------


def test_seal_then_verify_clean(trail):
    result = sealing.events_seal(block_size=700)

    assert (result.sealed, result.blocks, result.head_id) == (3000, 5, trail[-1])
    assert EventSeal.objects.count() == 3000
    checked = verify()
    assert checked.problem is None
    assert (checked.verified, checked.blocks, checked.head_id) == (3000, 5, trail[-1])


def test_seal_is_idempotent_and_resumes(trail, api):
    sealing.events_seal()
    assert sealing.events_seal().sealed == 0

    api.post(EVENTS_URL, make_event())
    result = sealing.events_seal()

    assert (result.sealed, result.blocks) == (1, 1)
    assert verify().problem is None
    assert verify().verified == 3001


def test_only_events_older_than_the_delay_are_sealed(trail, api, seal_settings):
    seal_settings.AUDITLOG_SEAL_DELAY_SECONDS = 300
    api.post(EVENTS_URL, make_event())  # received now: a transaction with a lower id may be in flight

    assert sealing.events_seal().sealed == 3000  # the demo events are days old
    assert not EventSeal.objects.filter(event_id=ActionLog.objects.latest("id").id).exists()


def test_seal_without_a_key_refuses(trail, seal_settings):
    seal_settings.AUDITLOG_SEAL_KEY = ""

    with pytest.raises(CommandError, match="AUDITLOG_SEAL_KEY is not set"):
        call_command("auditlog_seal", stdout=io.StringIO())


# --- tampering --------------------------------------------------------------------------------


def test_changed_metadata_is_named(trail):
    sealing.events_seal()
    without_triggers()
    sql(f"UPDATE {TABLE} SET metadata = %s WHERE id = %s", ['{"forged": true}', trail[1234]])

    problem = verify().problem

    assert (problem.event_id, problem.message) == (trail[1234], sealing.MSG_MODIFIED.format(id=trail[1234]))


def test_deleted_event_is_named(trail):
    sealing.events_seal()
    without_triggers()
    sql(f"DELETE FROM {TABLE} WHERE id = %s", [trail[2000]])

    problem = verify().problem

    assert (problem.event_id, problem.message) == (trail[2000], sealing.MSG_DELETED.format(id=trail[2000]))


def test_forged_event_in_a_gap_of_the_sealed_range_is_named(trail):
    without_triggers()
    forge_event(trail[-1] + 5)  # leaves a gap: ids +1..+4 never existed
    sql(f"DELETE FROM {TABLE} WHERE id = %s", [trail[-1] + 5])
    forge_event(trail[-1] + 10)
    sealing.events_seal()  # the chain now covers up to +10, with a gap below it
    forge_event(trail[-1] + 7)

    problem = verify().problem

    assert (problem.event_id, problem.message) == (
        trail[-1] + 7,
        sealing.MSG_INSERTED.format(id=trail[-1] + 7),
    )


def test_forged_event_below_the_chain_is_named(trail):
    sealing.events_seal()
    without_triggers()
    forge_event(0)

    problem = verify().problem

    assert (problem.event_id, problem.message) == (0, sealing.MSG_BELOW.format(id=0, start=0))


def test_forged_checkpoint_is_detected(trail):
    sealing.events_seal(block_size=1000)
    block = SealBlock.objects.order_by("last_event_id")[1]
    without_triggers()
    SealBlock.objects.filter(pk=block.pk).update(event_count=999)

    problem = verify().problem

    what = f"the checkpoint of events {block.first_event_id}-{block.last_event_id}"
    assert problem.message == sealing.MSG_FORGED.format(what=what)


def test_a_chain_recomputed_without_the_key_breaks_at_its_checkpoint(trail):
    """An attacker rewrites an event and recomputes every seal after it: only the HMAC'd
    checkpoint, which needs the key, gives it away."""
    sealing.events_seal(block_size=1000)
    without_triggers()
    target = trail[1500]
    sql(f"UPDATE {TABLE} SET actor_id = 'mallory' WHERE id = %s", [target])
    previous = EventSeal.objects.get(event_id=trail[1499]).chain_hash
    for row in sealing.events_rows(trail[1499], None, 10_000):
        previous = sealing.link(previous, row)
        EventSeal.objects.filter(event_id=row[0]).update(chain_hash=previous)

    problem = verify().problem

    block = SealBlock.objects.get(first_event_id__lte=target, last_event_id__gte=target)
    assert problem.message == sealing.MSG_RESEALED.format(
        first=block.first_event_id, last=block.last_event_id
    )


def test_the_owner_can_have_an_edited_history_resealed(trail):
    """What the seal chain does not catch today (docs/roles.md, the threat model): the tables'
    owner edits an event, empties the seal tables, and the next scheduled seal, which holds the
    key, seals the edited history; verify then says OK."""
    sealing.events_seal(block_size=1000)
    without_triggers()
    sql(f"UPDATE {TABLE} SET actor_id = 'mallory' WHERE id = %s", [trail[10]])
    for model in (EventSeal, SealBlock, SealAnchor):
        model.objects.all().delete()

    sealing.events_seal(block_size=1000)

    assert verify().problem is None
    assert ActionLog.objects.get(id=trail[10]).actor_id == "mallory"


def test_removing_the_newest_events_with_their_seals_goes_unnoticed(trail):
    """Nor this (the threat model): the newest events go, with their seals and checkpoints."""
    sealing.events_seal(block_size=1000)
    without_triggers()
    EventSeal.objects.filter(event_id__gt=trail[1999]).delete()
    SealBlock.objects.filter(first_event_id__gt=trail[1999]).delete()
    ActionLog.objects.filter(id__gt=trail[1999]).delete()

    result = verify()

    assert result.problem is None
    assert result.verified == 2000


def test_verify_command_exits_non_zero_naming_the_event(trail):
    call_command("auditlog_seal", stdout=io.StringIO())
    without_triggers()
    sql(f"UPDATE {TABLE} SET outcome = 'failure' WHERE id = %s", [trail[42]])
    out = io.StringIO()

    with pytest.raises(CommandError, match=f"event id {trail[42]}"):
        call_command("auditlog_verify", stdout=out, stderr=io.StringIO())

    assert out.getvalue().startswith(f"BROKEN (event id {trail[42]}): event {trail[42]} was modified")


def test_verify_command_on_an_untouched_trail(trail):
    call_command("auditlog_seal", stdout=io.StringIO())
    out = io.StringIO()

    call_command("auditlog_verify", stdout=out, stderr=io.StringIO())

    assert out.getvalue().startswith("OK: 3,000 events in 1 checkpoints verified")


def test_verify_since_starts_at_the_checkpoint_before(trail):
    sealing.events_seal(block_size=500)
    since = ActionLog.objects.get(id=trail[2600]).received_at

    result = sealing.chain_verify(since=since)

    assert result.problem is None
    assert result.verified == 3000 - 2500  # from the block holding event 2601 on


# --- key rotation -----------------------------------------------------------------------------


def test_rotated_key_verifies_with_the_old_key_kept(trail, api, seal_settings):
    sealing.events_seal()
    seal_settings.AUDITLOG_SEAL_KEY = "next-seal-key"
    api.post(EVENTS_URL, make_event())
    sealing.events_seal()

    assert verify().problem.message.endswith("which is not configured (AUDITLOG_SEAL_OLD_KEYS)")
    seal_settings.AUDITLOG_SEAL_OLD_KEYS = ["current-seal-key"]
    assert verify().problem is None
    assert set(SealBlock.objects.values_list("key_id", flat=True)) == {
        sealing._key_id(b"current-seal-key"),
        sealing._key_id(b"next-seal-key"),
    }


# --- purge ------------------------------------------------------------------------------------


def test_purge_keeps_the_chain_verifiable(trail):
    sealing.events_seal(block_size=700)
    plan = events_purge_plan(older_than_days=30)

    result = events_purge(plan, batch_size=400)

    kept = ActionLog.objects.count()
    assert result.purged == plan.count > 1000
    assert kept == 3000 - result.purged
    assert not ActionLog.objects.filter(received_at__lt=timezone.now() - timedelta(days=30)).exists()
    anchor = SealAnchor.objects.get()
    assert (anchor.purged_through_event_id, anchor.purged_count) == (plan.through_id, result.purged)
    checked = verify()
    assert checked.problem is None
    assert checked.verified == kept


def test_purge_command_records_itself_and_dry_run_deletes_nothing(trail):
    call_command("auditlog_seal", stdout=io.StringIO())
    out = io.StringIO()
    call_command("auditlog_purge", "--older-than", "30", "--dry-run", stdout=out)
    assert ActionLog.objects.count() == 3000
    due = int(out.getvalue().split()[0].replace(",", ""))

    call_command("auditlog_purge", "--older-than", "30", stdout=io.StringIO())

    record = ActionLog.objects.get(action="auditlog.purge")
    assert record.metadata["deleted"] == due
    assert (record.actor_id, record.actor_type) == ("auditlog_purge", "system")
    assert verify().problem is None


def test_purge_keeps_old_events_that_are_not_sealed_yet(trail, seal_settings):
    seal_settings.AUDITLOG_SEAL_DELAY_SECONDS = 50 * 86400  # sealing lags: only events over 50 days old
    sealing.events_seal()

    plan = events_purge_plan(older_than_days=30)

    sealed_through = sealing.seal_head()[0]
    assert plan.through_id == sealed_through
    assert (
        plan.unsealed_old
        == ActionLog.objects.filter(id__gt=sealed_through, received_at__lt=plan.cutoff).count()
        > 0
    )
    events_purge(plan, batch_size=500)
    assert verify().problem is None


def test_purge_without_sealing_deletes_and_needs_no_key(trail, seal_settings):
    seal_settings.AUDITLOG_SEAL_KEY = ""

    result = events_purge(events_purge_plan(older_than_days=30), batch_size=1000)

    assert result.purged > 1000
    assert not SealAnchor.objects.exists()


def test_purge_needs_a_retention(trail, seal_settings):
    seal_settings.AUDITLOG_RETENTION_DAYS = None

    with pytest.raises(CommandError, match="--older-than"):
        call_command("auditlog_purge", stdout=io.StringIO())
