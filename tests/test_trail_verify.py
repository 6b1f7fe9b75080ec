"""auditlog_verify over the trail's tree, with database write access and no key as the attacker
(the tables' owner, triggers off): each change is named. What one database cannot show (the tree
rebuilt from scratch, the newest part cut off) the offline verifier shows: test_offline_verifier."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.models import ActionLog, Checkpoint, RetentionRecord
from auditlog.trail.append_only import delete_permit_grant, delete_permit_revoke
from auditlog.trail.note import Signer
from auditlog.trail.retention import events_purge, events_purge_plan
from auditlog.trail.tree import tree_append
from auditlog.trail.tree_verify import tree_verify
from tests.test_sealing import forge_event, sql, without_triggers

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("maintenance_role")]


@pytest.fixture(autouse=True)
def trail_settings(settings):
    settings.AUDITLOG_TRAIL_KEY = Signer.generate("verify.example/log").text()
    settings.AUDITLOG_TRAIL_VERIFIER_KEYS = []
    settings.AUDITLOG_SEAL_KEY = ""
    settings.AUDITLOG_SEAL_DELAY_SECONDS = 0
    settings.AUDITLOG_SEAL_BOUND_SECONDS = 3600
    settings.AUDITLOG_CHECKPOINT_MAX_GAP_SECONDS = 0
    return settings


def seal():
    return tree_append(
        upto_id=ActionLog.objects.order_by("-id").values_list("id", flat=True).first(), block_size=300
    )


@pytest.fixture
def trail():
    call_command("auditlog_demo", "--count", "900", "--seed", "8", stdout=io.StringIO())
    seal()
    call_command("auditlog_demo", "--count", "300", "--seed", "9", stdout=io.StringIO())
    seal()
    return list(ActionLog.objects.order_by("id").values_list("id", flat=True))


def problems():
    return tree_verify().problems


def test_an_untouched_trail_verifies_and_a_purge_by_policy_is_told_apart(trail):
    events_purge(events_purge_plan(older_than_days=30), batch_size=200)
    out = io.StringIO()

    call_command("auditlog_verify", stdout=out)

    assert RetentionRecord.objects.order_by("last_leaf").first().first_leaf == 0
    result = tree_verify()
    assert result.ok and result.leaves == 1200 and result.purged == 1200 - ActionLog.objects.count() > 0
    assert "OK: the trail's tree of 1,200 leaves" in out.getvalue()


def test_a_modified_event_is_named(trail):
    without_triggers()
    sql("UPDATE auditlog_actionlog SET actor_id = 'mallory' WHERE id = %s", [trail[500]])

    found = problems()

    uuid = ActionLog.objects.get(id=trail[500]).uuid
    assert (
        found[0]
        == f"leaf 500: event {uuid} (id {trail[500]}) was modified: its fields no longer give its leaf"
    )
    with pytest.raises(CommandError, match="does not verify"):
        call_command("auditlog_verify", stdout=io.StringIO())


def test_metadata_swapped_for_its_json_string_is_named(trail):
    event = ActionLog.objects.get(id=trail[3])
    without_triggers()
    text = json.dumps(json.dumps(event.metadata))  # the object, as a JSON string value
    sql("UPDATE auditlog_actionlog SET metadata = %s WHERE id = %s", [text, trail[3]])

    assert problems()[0].startswith(f"leaf 3: event {event.uuid} (id {trail[3]}) was modified")


def test_a_deleted_event_is_named(trail):
    without_triggers()
    sql("DELETE FROM auditlog_actionlog WHERE id = %s", [trail[42]])

    assert problems()[0] == f"leaf 42: event id {trail[42]} was deleted; no retention record covers it"


def test_an_event_inserted_among_sealed_ones_is_named():
    call_command("auditlog_demo", "--count", "50", "--seed", "8", stdout=io.StringIO())
    gap = ActionLog.objects.order_by("id").values_list("id", flat=True)[20]
    with sqlite_writer_queue(), transaction.atomic():
        delete_permit_grant("test")
        ActionLog.objects.filter(id=gap).delete()  # before sealing: an id the tree never had
        delete_permit_revoke()
    seal()

    forge_event(gap)

    assert problems() == [f"event id {gap} was inserted out of band: it lies among sealed events"]


def test_a_deleted_checkpoint_in_the_middle_is_named(trail):
    call_command("auditlog_demo", "--count", "10", "--seed", "10", stdout=io.StringIO())
    seal()
    middle = Checkpoint.objects.order_by("id")[1]
    without_triggers()
    sql("DELETE FROM auditlog_checkpoint WHERE id = %s", [middle.id])

    assert any("one signed between them is missing" in problem for problem in problems())


def test_an_altered_checkpoint_or_leaf_hash_is_named(trail):
    first = Checkpoint.objects.order_by("id").first()
    without_triggers()
    sql(
        "UPDATE auditlog_checkpoint SET note = %s WHERE id = %s",
        [first.note.replace("\n900\n", "\n899\n"), first.id],
    )
    sql("UPDATE auditlog_trailleaf SET leaf_hash = %s WHERE leaf_index = 7", [bytes(32)])

    found = problems()

    assert any(f"checkpoint #{first.id} (900 leaves) does not verify" in problem for problem in found)
    assert any(problem.startswith("leaf 7: event") for problem in found)


def test_old_unsealed_events_fail(trail, trail_settings):
    trail_settings.AUDITLOG_SEAL_BOUND_SECONDS = 60
    call_command("auditlog_demo", "--count", "5", "--seed", "11", stdout=io.StringIO())  # received long ago

    assert problems() == [
        "5 events received more than AUDITLOG_SEAL_BOUND_SECONDS (60 s) ago are not sealed: "
        "is auditlog_seal --follow running?"
    ]


def test_a_stale_latest_checkpoint_fails(trail, trail_settings, monkeypatch):
    trail_settings.AUDITLOG_CHECKPOINT_MAX_GAP_SECONDS = 120
    assert problems() == []
    later = timezone.now() + timedelta(seconds=1000)
    monkeypatch.setattr("auditlog.trail.tree_verify.timezone.now", lambda: later)

    (problem,) = problems()

    assert problem.startswith("the latest checkpoint is 10") and "sealing stopped, or the newest" in problem


def test_a_checkpoint_of_the_empty_tree_is_checked_and_blocks_nothing(settings):
    """Sealing signs a checkpoint before anything is old enough to seal (a fresh install)."""
    tree_append(upto_id=None, block_size=100)
    call_command("auditlog_demo", "--count", "20", "--seed", "7", stdout=io.StringIO())
    seal()

    result = tree_verify()

    assert result.ok and result.checkpoints == 2 and result.leaves == 20


def test_a_retention_record_is_read_from_its_signed_text_not_its_columns(trail):
    events_purge(events_purge_plan(older_than_days=30, whole_partitions=False), batch_size=5000)
    record = RetentionRecord.objects.get()
    without_triggers()
    sql("UPDATE auditlog_retentionrecord SET last_leaf = last_leaf + 5 WHERE id = %s", [record.id])
    sql(
        "DELETE FROM auditlog_actionlog WHERE id IN"
        " (SELECT event_id FROM auditlog_trailleaf WHERE leaf_index BETWEEN %s AND %s)",
        [record.last_leaf + 1, record.last_leaf + 5],
    )

    found = problems()

    signed = f"its columns differ from its signed note (leaves 0-{record.last_leaf})"
    assert found[0] == f"the retention record #{record.id}: {signed}"
    assert f"leaf {record.last_leaf + 1}: event id" in found[1]
