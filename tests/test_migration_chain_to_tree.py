"""Migration 0009: a database sealed with the hash chain is verified once with its HMAC key, then
its events become the tree's first leaves, in the same order, and the chain's tables go."""

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from auditlog.models import ActionLog, TrailLeaf
from auditlog.trail import legacy_chain
from auditlog.trail.note import Signer
from auditlog.trail.tree import checkpoint_sign, tree_size_now
from auditlog.trail.tree_verify import tree_verify
from tests.conftest import as_owner

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("auditlog", "0008_retention_record")]
AFTER = [("auditlog", "0009_chain_to_tree")]
LATEST = "latest"  # the app's newest migration, whichever it is
KEY = "old-seal-key"


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    if targets == LATEST:
        targets = executor.loader.graph.leaf_nodes("auditlog")
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def chain_seal(apps, key: str, block_size: int = 40) -> None:
    """Seal every event as the chain did (auditlog.trail.legacy_chain's formats)."""
    historical = apps.get_model("auditlog", "ActionLog")
    EventSeal = apps.get_model("auditlog", "EventSeal")  # noqa: N806
    SealBlock = apps.get_model("auditlog", "SealBlock")  # noqa: N806
    rows = list(historical.objects.order_by("id").values_list(*legacy_chain.FIELDS))
    previous = legacy_chain.GENESIS
    for start in range(0, len(rows), block_size):
        block_rows = rows[start : start + block_size]
        first_previous = previous
        for row in block_rows:
            previous = legacy_chain.link(previous, row)
            EventSeal.objects.create(event_id=row[0], chain_hash=previous)
        block = SealBlock(
            first_event_id=block_rows[0][0],
            last_event_id=block_rows[-1][0],
            event_count=len(block_rows),
            previous_hash=first_previous,
            chain_hash=previous,
            key_id=legacy_chain.key_id(key.encode()),
        )
        block.mac = legacy_chain.block_mac(key.encode(), block)
        block.save()


@pytest.fixture
def chained(settings, monkeypatch):
    """Events sealed with the chain, at migration 0008; the database is back at the latest
    migration after the test."""
    settings.AUDITLOG_SEAL_BOUND_SECONDS = 10**9
    settings.AUDITLOG_CHECKPOINT_MAX_GAP_SECONDS = 0
    call_command("auditlog_demo", "--count", "100", "--seed", "2", stdout=io.StringIO())
    with as_owner():
        apps = migrate(BEFORE)
        chain_seal(apps, KEY)
        yield apps
        if ActionLog.objects.exists() and not TrailLeaf.objects.exists():
            monkeypatch.setenv("AUDITLOG_SEAL_KEY", KEY)
        migrate(LATEST)


def test_a_verified_chain_becomes_the_first_leaves_in_the_same_order(chained, monkeypatch, settings):
    monkeypatch.setenv("AUDITLOG_SEAL_KEY", "a-newer-key")
    monkeypatch.setenv("AUDITLOG_SEAL_OLD_KEYS", f"x,{KEY}")

    migrate(AFTER)

    ids = list(ActionLog.objects.order_by("id").values_list("id", flat=True))
    assert list(TrailLeaf.objects.order_by("leaf_index").values_list("event_id", flat=True)) == ids
    signer = Signer.generate("migrated.example/log")
    settings.AUDITLOG_TRAIL_KEY = signer.text()
    checkpoint_sign(signer, tree_size_now())
    assert tree_verify().ok
    assert "auditlog_eventseal" not in connection.introspection.table_names()


def test_a_chain_that_does_not_verify_stops_the_migration(chained, monkeypatch):
    monkeypatch.setenv("AUDITLOG_SEAL_KEY", KEY)
    seals = chained.get_model("auditlog", "EventSeal").objects
    event = seals.order_by("event_id")[17]
    seals.filter(event_id=event.event_id).update(chain_hash="0" * 64)  # the chain's tables are unguarded here

    with pytest.raises(
        RuntimeError, match=f"The hash chain does not verify: event {event.event_id} was modified"
    ):
        migrate(AFTER)
    assert not TrailLeaf.objects.exists()
    seals.all().delete()  # no chain: the fixture migrates forward
    chained.get_model("auditlog", "SealBlock").objects.all().delete()


def test_without_the_key_the_migration_says_what_it_needs(chained, monkeypatch):
    monkeypatch.delenv("AUDITLOG_SEAL_KEY", raising=False)
    monkeypatch.delenv("AUDITLOG_SEAL_OLD_KEYS", raising=False)

    with pytest.raises(RuntimeError, match="Run this migrate with AUDITLOG_SEAL_KEY"):
        migrate(AFTER)
