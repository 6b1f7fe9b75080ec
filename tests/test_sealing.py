"""Append-only triggers, sealing into the trail's tree, verification and purge, on the suite's
database (how the tree answers tampering: tests/test_trail_verify.py; its proofs: test_trail.py).

Everything here runs as the maintenance role, the tables' owner (on PostgreSQL with two roles):
it is the role that seals and purges, and the one the triggers stop from changing the trail by
mistake. What the runtime role can and cannot do is tests/test_roles.py.
"""

import getpass
import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.models import ActionLog, Checkpoint, RetentionRecord, TrailLeaf, TrailNode
from auditlog.trail.append_only import (
    GUARDED_TABLES,
    SQLITE_TRIGGERS,
    delete_permit_grant,
    delete_permit_revoke,
)
from auditlog.trail.note import Checkpoint as CheckpointBody
from auditlog.trail.note import Signer, note_open
from auditlog.trail.retention import events_purge, events_purge_plan
from auditlog.trail.tree import checkpoint_sign, seal_cutoff_id, tree_append
from auditlog.trail.tree_verify import tree_verify
from tests.conftest import EVENTS_URL, make_event

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("maintenance_role")]

TABLE = ActionLog._meta.db_table


KEY = Signer.generate("sealing.example/log")


@pytest.fixture(autouse=True)
def seal_settings(settings):
    settings.AUDITLOG_TRAIL_KEY = KEY.text()
    settings.AUDITLOG_TRAIL_VERIFIER_KEYS = []
    settings.AUDITLOG_SEAL_DELAY_SECONDS = 0
    settings.AUDITLOG_SEAL_BOUND_SECONDS = 10**9
    settings.AUDITLOG_CHECKPOINT_MAX_GAP_SECONDS = 0
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
    return tree_verify()


def seal(block_size=5000):
    return tree_append(upto_id=seal_cutoff_id(timezone.now()), block_size=block_size)


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


def test_the_trees_tables_refuse_change_and_removal_without_a_permit(trail):
    seal(block_size=1000)
    events_purge(events_purge_plan(older_than_days=30), batch_size=1000)  # a retention record exists
    refused = [
        (TrailLeaf, "update", {"leaf_hash": bytes(32)}),
        (TrailLeaf, "delete", {}),
        (TrailNode, "update", {"hash": bytes(32)}),
        (TrailNode, "delete", {}),
        (Checkpoint, "update", {"note": "forged"}),
        (Checkpoint, "delete", {}),
        (RetentionRecord, "update", {"policy": "none"}),
        (RetentionRecord, "delete", {}),
    ]
    for model, operation, values in refused:
        assert model.objects.exists()
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            getattr(model.objects.all(), operation)(**values)

    assert verify().ok


# --- sealing ----------------------------------------------------------------------------------


def test_seal_then_verify_clean(trail):
    result = seal(block_size=1000)

    assert (result.sealed, result.tree_size) == (3000, 3000)
    checked = verify()
    assert checked.ok and checked.leaves == 3000 and checked.checkpoints == 1


def test_seal_is_idempotent_and_resumes(trail, api):
    seal(block_size=1000)
    assert seal().sealed == 0
    api.post(EVENTS_URL, make_event())

    assert seal().sealed == 1
    assert TrailLeaf.objects.count() == 3001
    assert verify().ok


def test_only_events_older_than_the_delay_are_sealed(trail, api, seal_settings):
    seal_settings.AUDITLOG_SEAL_DELAY_SECONDS = 3600
    api.post(EVENTS_URL, make_event())
    old = ActionLog.objects.filter(received_at__lt=timezone.now() - timedelta(hours=1)).count()

    assert seal().sealed == old
    assert not TrailLeaf.objects.filter(event_id=ActionLog.objects.order_by("-id").first().id).exists()


def test_seal_without_a_key_refuses(trail, seal_settings):
    seal_settings.AUDITLOG_TRAIL_KEY = ""

    with pytest.raises(CommandError, match="AUDITLOG_TRAIL_KEY is not set"):
        call_command("auditlog_seal", stdout=io.StringIO())


def test_seal_follow_signs_a_checkpoint_per_round_when_due(trail, seal_settings):
    seal_settings.AUDITLOG_SEAL_INTERVAL_SECONDS = 0
    seal_settings.AUDITLOG_CHECKPOINT_INTERVAL_SECONDS = 0  # due every round
    out = io.StringIO()

    call_command("auditlog_seal", "--follow", "--rounds", "3", stdout=out)

    assert TrailLeaf.objects.count() == 3000
    assert Checkpoint.objects.count() == 3
    assert "auditlog_seal --follow: stopped." in out.getvalue()


# --- what one database cannot show, and what an earlier checkpoint does ---------------------------


def _signed(checkpoint) -> CheckpointBody:
    return CheckpointBody.parse(note_open(checkpoint.note, [KEY.verifier()]))


def test_the_owner_can_have_an_edited_history_resealed(trail):
    """The tables' owner edits an event, empties the tree's tables and lets sealing run again:
    the database alone verifies, as it would; a checkpoint kept from before proves the rewrite
    (test_offline_verifier: the verifier's state file refuses it)."""
    earlier = _signed(seal(block_size=1000).checkpoint)
    without_triggers()
    sql(f"UPDATE {TABLE} SET actor_id = 'mallory' WHERE id = %s", [trail[10]])
    for table in ("auditlog_checkpoint", "auditlog_trailnode", "auditlog_trailleaf"):
        sql(f"DELETE FROM {table}")

    later = _signed(seal(block_size=1000).checkpoint)

    assert verify().ok
    assert later.size == earlier.size and later.root != earlier.root


def test_removing_the_newest_events_with_their_seals_goes_unnoticed(trail):
    """Likewise: the newest events go with their leaves and checkpoints. The database verifies;
    an earlier checkpoint of the longer log shows the log shrank."""
    seal(block_size=1000)
    earlier = _signed(Checkpoint.objects.get())
    without_triggers()
    sql("DELETE FROM auditlog_checkpoint")
    sql('DELETE FROM auditlog_trailnode WHERE height = 8 AND "index" >= 7')  # 7 * 256 + 256 > 2000
    sql("DELETE FROM auditlog_trailleaf WHERE leaf_index >= 2000")
    sql(f"DELETE FROM {TABLE} WHERE id > %s", [trail[1999]])
    checkpoint_sign(KEY, 2000)

    result = verify()

    assert result.ok and result.leaves == 2000
    assert earlier.size == 3000 > _signed(Checkpoint.objects.get()).size


def test_verify_command_exits_non_zero_naming_the_event(trail):
    call_command("auditlog_seal", stdout=io.StringIO())
    without_triggers()
    sql(f"UPDATE {TABLE} SET action = 'x' WHERE id = %s", [trail[77]])
    out = io.StringIO()

    with pytest.raises(CommandError, match="does not verify"):
        call_command("auditlog_verify", stdout=out, stderr=io.StringIO())

    assert out.getvalue().startswith(f"BROKEN: leaf 77: event {ActionLog.objects.get(id=trail[77]).uuid}")


def test_verify_command_on_an_untouched_trail(trail):
    call_command("auditlog_seal", stdout=io.StringIO())
    out = io.StringIO()

    call_command("auditlog_verify", stdout=out, stderr=io.StringIO())

    assert out.getvalue().startswith(
        "OK: the trail's tree of 3,000 leaves (0 purged by signed retention records)"
    )


# --- key rotation -----------------------------------------------------------------------------


def test_rotated_key_verifies_with_the_old_verifier_key_kept(trail, api, seal_settings):
    seal()
    new = Signer.generate("sealing.example/log")
    seal_settings.AUDITLOG_TRAIL_KEY = new.text()
    api.post(EVENTS_URL, make_event())
    seal()

    assert any("does not verify" in problem for problem in verify().problems)
    seal_settings.AUDITLOG_TRAIL_VERIFIER_KEYS = [KEY.verifier().text()]
    assert verify().ok
    assert set(Checkpoint.objects.values_list("key_id", flat=True)) == {KEY.key_id.hex(), new.key_id.hex()}


def test_verify_needs_only_the_verifier_key(trail, seal_settings):
    seal()
    seal_settings.AUDITLOG_TRAIL_KEY = ""
    seal_settings.AUDITLOG_TRAIL_VERIFIER_KEYS = [KEY.verifier().text()]

    assert verify().ok


# --- purge ------------------------------------------------------------------------------------


def test_purge_keeps_the_tree_verifiable_and_signs_what_it_removed(trail):
    seal(block_size=700)
    plan = events_purge_plan(older_than_days=30)

    result = events_purge(plan, batch_size=400)

    kept = ActionLog.objects.count()
    assert result.purged == plan.total > 1000
    assert kept == 3000 - result.purged
    assert not ActionLog.objects.filter(received_at__lt=plan.cutoff).exists()
    assert TrailLeaf.objects.count() == 3000  # the tree never shrinks
    records = list(RetentionRecord.objects.order_by("last_leaf"))
    assert records[0].first_leaf == 0 and records[-1].last_leaf == result.purged - 1
    assert sum(record.purged_count for record in records) == result.purged
    assert note_open(records[0].note, [KEY.verifier()]).startswith("auditlog retention record v1\n")
    checked = verify()
    assert checked.ok and checked.purged == result.purged


def test_purge_command_records_itself_and_dry_run_deletes_nothing(trail, django_capture_on_commit_callbacks):
    # 31 days: the trail's events are 43.2 minutes apart, and 30 days back falls within a second
    # of one (the 2,000th), which the dry run and the purge, a moment apart, counted differently.
    call_command("auditlog_seal", stdout=io.StringIO())
    out = io.StringIO()
    call_command("auditlog_purge", "--older-than", "31", "--dry-run", stdout=out)
    assert ActionLog.objects.count() == 3000
    due = int(out.getvalue().split()[0].replace(",", ""))

    with django_capture_on_commit_callbacks(execute=True):
        call_command("auditlog_purge", "--older-than", "31", stdout=io.StringIO())

    record = ActionLog.objects.get(action="auditlog.purge")  # a change of access: who, with the OS user
    assert record.metadata["deleted"] == due and record.target_id == "older than 31 days"
    assert (record.actor_id, record.actor_type) == (f"command line ({getpass.getuser()})", "command line")
    assert verify().ok


def test_purge_keeps_old_events_that_are_not_sealed_yet(trail, seal_settings):
    seal_settings.AUDITLOG_SEAL_DELAY_SECONDS = 50 * 86400  # sealing lags: only events over 50 days old
    seal()

    plan = events_purge_plan(older_than_days=30)

    sealed_through = TrailLeaf.objects.order_by("-leaf_index").values_list("event_id", flat=True).first()
    assert plan.through_id == sealed_through
    assert (
        plan.unsealed_old
        == ActionLog.objects.filter(id__gt=sealed_through, received_at__lt=plan.cutoff).count()
        > 0
    )
    events_purge(plan, batch_size=500)
    assert verify().ok


def test_purge_without_a_tree_deletes_and_needs_no_key(trail, seal_settings):
    seal_settings.AUDITLOG_TRAIL_KEY = ""

    result = events_purge(events_purge_plan(older_than_days=30), batch_size=1000)

    assert result.purged > 1000
    assert not RetentionRecord.objects.exists()


def test_purge_of_a_sealed_trail_needs_the_key(trail, seal_settings):
    seal()
    seal_settings.AUDITLOG_TRAIL_KEY = ""

    with pytest.raises(CommandError, match="a purge signs a retention record"):
        call_command("auditlog_purge", "--older-than", "30", stdout=io.StringIO())
    assert ActionLog.objects.count() == 3000


def test_purge_needs_a_retention(trail, seal_settings):
    seal_settings.AUDITLOG_RETENTION_DAYS = None

    with pytest.raises(CommandError, match="--older-than"):
        call_command("auditlog_purge", stdout=io.StringIO())
