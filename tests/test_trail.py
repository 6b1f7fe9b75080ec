"""The trail's Merkle tree in the database, its signed checkpoints and its proofs over the API,
checked by our own RFC 9162 code and by an independent one (Go's x/mod sumdb: tests/independent)."""

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from auditlog.events.formats import LEAF_V1
from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog, Scope, TrailLeaf, TrailNode
from auditlog.trail import merkle
from auditlog.trail.leaf_rows import LEAF_COLUMNS
from auditlog.trail.note import Checkpoint as CheckpointBody
from auditlog.trail.note import Signer, note_open
from auditlog.trail.tree import (
    StoredTree,
    _nodes_completed,
    checkpoint_sign,
    tree_append,
    tree_size_now,
)
from tests.conftest import ApiClient
from tests.independent import tlogcheck

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("maintenance_role")]

ORIGIN = "audit.example/log"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def signer(settings):
    signer = Signer.generate(ORIGIN)
    settings.AUDITLOG_TRAIL_KEY = signer.text()
    settings.AUDITLOG_TRAIL_VERIFIER_KEYS = []
    settings.AUDITLOG_SEAL_DELAY_SECONDS = 0
    return signer


@pytest.fixture
def reader(client, db):
    return ApiClient(client, api_key_create(name="auditor", scopes={Scope.READ_ALL})[1])


def demo(count, seed):
    call_command("auditlog_demo", "--count", str(count), "--seed", str(seed), stdout=io.StringIO())


def seal(block_size=5000):
    upto = ActionLog.objects.order_by("-id").values_list("id", flat=True).first()
    return tree_append(upto_id=upto, block_size=block_size)


def expected_leaf_hashes() -> list[bytes]:
    rows = ActionLog.objects.order_by("id").values_list(*LEAF_COLUMNS)
    return [merkle.leaf_hash(LEAF_V1.leaf(index, row)) for index, row in enumerate(rows)]


def test_sealing_in_uneven_blocks_stores_the_tree_of_every_event(signer):
    demo(700, 1)

    result = seal(block_size=97)

    hashes = expected_leaf_hashes()
    assert result.sealed == tree_size_now() == 700
    assert [
        bytes(h) for h in TrailLeaf.objects.order_by("leaf_index").values_list("leaf_hash", flat=True)
    ] == hashes
    assert sorted(TrailNode.objects.values_list("height", "index")) == [(8, 0), (8, 1)]
    checkpoint = CheckpointBody.parse(note_open(result.checkpoint.note, [signer.verifier()]))
    assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (ORIGIN, 700, merkle.root_of(hashes))
    assert bytes(result.checkpoint.root_hash) == checkpoint.root


def test_a_quiet_minute_still_gets_a_new_checkpoint(signer):
    """Silence is visible: a checkpoint a minute later, over the same tree, is a new signed note."""
    demo(5, 1)
    first = seal().checkpoint

    second = checkpoint_sign(signer, 5, now=first.created_at + timedelta(minutes=1))

    assert (first.tree_size, second.tree_size, bytes(first.root_hash)) == (5, 5, bytes(second.root_hash))
    times = [CheckpointBody.parse(note_open(c.note, [signer.verifier()])).time for c in (first, second)]
    assert times[1] - times[0] == 60


def test_stored_nodes_across_16_levels_give_the_right_roots_and_proofs():
    """70,000 leaves (synthetic hashes, appended in uneven runs) cross a height-16 node."""
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(70_000)]
    size = 0
    for run in (1, 255, 300, 65_000, 3_000, 1_444):
        tree = StoredTree()
        for i in range(size, size + run):
            tree.known[(0, i)] = hashes[i]
        TrailLeaf.objects.bulk_create(
            [TrailLeaf(leaf_index=i, event_id=i + 1, leaf_hash=hashes[i]) for i in range(size, size + run)],
            batch_size=5000,
        )
        TrailNode.objects.bulk_create(_nodes_completed(size, size + run, tree))
        size += run
    assert size == 70_000
    assert TrailNode.objects.filter(height=16).count() == 1
    assert TrailNode.objects.filter(height=8).count() == 273

    read = StoredTree().read
    for n in (1, 256, 257, 65_535, 65_536, 65_537, 70_000):
        root = merkle.tree_root(read, n)
        assert root == merkle.root_of(hashes[:n])
        for index in (0, n // 2, n - 1):
            merkle.inclusion_verify(hashes[index], index, n, merkle.inclusion_proof(read, index, n), root)
    proof = merkle.consistency_proof(read, 65_537, 70_000)
    merkle.consistency_verify(65_537, 70_000, merkle.root_of(hashes[:65_537]), merkle.root_of(hashes), proof)


# --- over the API -----------------------------------------------------------------------------


def test_proofs_over_the_api_verify(signer, reader):
    demo(300, 2)
    old = seal().checkpoint
    demo(200, 3)
    new = seal().checkpoint
    event = ActionLog.objects.order_by("id")[123]

    checkpoint = reader.get("/api/v1/trail/checkpoint")
    proof = reader.get(f"/api/v1/events/{event.uuid}/proof").json()
    old_proof = reader.get(f"/api/v1/events/{event.uuid}/proof", tree_size=300).json()
    consistency = reader.get("/api/v1/trail/consistency", first=300, second=500).json()

    assert checkpoint.status_code == 200 and checkpoint.content.decode() == new.note
    assert checkpoint["Content-Type"] == "text/plain; charset=utf-8"
    assert (proof["leaf_index"], proof["tree_size"]) == (123, 500)
    leaf = base64.b64decode(proof["leaf"])
    assert json.loads(leaf)["id"] == str(event.uuid)
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    merkle.inclusion_verify(merkle.leaf_hash(leaf), 123, 500, hashes, bytes(new.root_hash))
    old_hashes = [base64.b64decode(h) for h in old_proof["hashes"]]
    merkle.inclusion_verify(merkle.leaf_hash(leaf), 123, 300, old_hashes, bytes(old.root_hash))
    merkle.consistency_verify(
        300,
        500,
        bytes(old.root_hash),
        bytes(new.root_hash),
        [base64.b64decode(h) for h in consistency["hashes"]],
    )


def test_a_read_key_gets_proofs_of_its_own_events_only(signer, client):
    """A proof carries the event's leaf (its fields): a key with the read scope gets its own
    source's only; checkpoints and consistency proofs (no event in them) are for every reader."""
    demo(20, 4)
    producer = ApiClient(client, api_key_create(name="producer", scopes={Scope.WRITE, Scope.READ})[1])
    own = producer.post("/api/v1/events", {"action": "a.b", "actor": {"id": "1"}}).json()["id"]
    seal()
    other = ActionLog.objects.exclude(uuid=own).order_by("id").first()

    assert producer.get(f"/api/v1/events/{own}/proof").status_code == 200
    assert producer.get(f"/api/v1/events/{other.uuid}/proof").status_code == 404
    assert producer.get("/api/v1/trail/checkpoint").status_code == 200


@pytest.mark.parametrize("purge", [False, True], ids=["whole", "across-a-purge"])
def test_an_independent_implementation_verifies_the_checkpoints_and_proofs(
    signer, reader, client, tmp_path, purge
):
    binary = tlogcheck.require()
    demo(300, 2)
    old = seal(block_size=70).checkpoint
    demo(700, 3)
    if purge:  # the oldest events go between the two checkpoints; their leaves stay
        call_command("auditlog_purge", "--older-than", "30", stdout=io.StringIO())
        assert ActionLog.objects.count() < 1000
    new = seal(block_size=333).checkpoint
    vkey = client.get("/api/v1/trail/verifier-keys").content.decode().splitlines()[0]
    (tmp_path / "old.note").write_text(old.note)
    (tmp_path / "new.note").write_text(new.note)
    remaining = list(ActionLog.objects.order_by("id"))
    for event in {remaining[0], remaining[len(remaining) // 2], remaining[-1], *remaining[250:260]}:
        (tmp_path / "proof.json").write_text(
            reader.get(f"/api/v1/events/{event.uuid}/proof").content.decode()
        )
        result = tlogcheck.run(
            "inclusion",
            "-vkey",
            vkey,
            "-checkpoint",
            tmp_path / "new.note",
            "-proof",
            tmp_path / "proof.json",
        )
        assert result.returncode == 0, result.stderr
    (tmp_path / "consistency.json").write_text(
        reader.get("/api/v1/trail/consistency", first=300, second=new.tree_size).content.decode()
    )
    checked = tlogcheck.run(
        "consistency",
        "-vkey",
        vkey,
        "-old",
        tmp_path / "old.note",
        "-new",
        tmp_path / "new.note",
        "-proof",
        tmp_path / "consistency.json",
    )
    assert checked.returncode == 0, checked.stderr
    assert binary


def test_a_changed_event_no_longer_proves(signer, reader):
    demo(50, 4)
    new = seal().checkpoint
    event = ActionLog.objects.order_by("id")[7]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's inserts left FK checks pending
            cursor.execute("ALTER TABLE auditlog_actionlog DISABLE TRIGGER USER")
        else:
            cursor.execute("DROP TRIGGER auditlog_no_update")
        cursor.execute("UPDATE auditlog_actionlog SET actor_id = 'mallory' WHERE id = %s", [event.id])

    proof = reader.get(f"/api/v1/events/{event.uuid}/proof").json()

    leaf = base64.b64decode(proof["leaf"])
    with pytest.raises(merkle.ProofError):
        merkle.inclusion_verify(
            merkle.leaf_hash(leaf),
            7,
            50,
            [base64.b64decode(h) for h in proof["hashes"]],
            bytes(new.root_hash),
        )


def test_api_errors(signer, reader, client):
    assert reader.get("/api/v1/trail/checkpoint").status_code == 404
    demo(10, 5)
    event = ActionLog.objects.order_by("id").first()
    assert reader.get(f"/api/v1/events/{event.uuid}/proof").status_code == 404  # not sealed yet
    seal()
    beyond = reader.get(f"/api/v1/events/{event.uuid}/proof", tree_size=11)
    assert beyond.status_code == 404
    assert (
        beyond.json()["error"]["message"]
        == "No such proof: the event is leaf 0: it is in trees of 1 to 10 leaves."
    )
    assert reader.get(f"/api/v1/events/{event.uuid}/proof", tree_size="x").status_code == 400
    assert reader.get("/api/v1/trail/consistency", first=5).status_code == 400
    assert reader.get("/api/v1/trail/consistency", first="²", second=10).status_code == 400
    assert reader.get("/api/v1/trail/consistency", first="\u0661", second=10).status_code == 400
    assert reader.get("/api/v1/trail/consistency", first=5, second=11).status_code == 404
    assert reader.get("/api/v1/trail/consistency", first=6, second=5).status_code == 404
    assert reader.get("/api/v1/trail/consistency", first=5, second=10).status_code == 200
    assert client.get("/api/v1/trail/checkpoint").status_code == 401
    keys = client.get("/api/v1/trail/verifier-keys")
    assert keys.status_code == 200 and keys.content.decode() == signer.verifier().text() + "\n"


def test_an_export_bundle_verifies_offline_after_a_purge(signer, tmp_path, settings):
    """auditlog_export --bundle, checked by the offline verifier in a process without Django."""
    demo(1500, 6)
    seal(block_size=400)
    call_command("auditlog_purge", "--older-than", "30", stdout=io.StringIO())
    bundle = tmp_path / "bundle.jsonl"
    call_command("auditlog_export", "--bundle", "-o", str(bundle), stdout=io.StringIO(), stderr=io.StringIO())
    offline = [
        sys.executable,
        "-c",
        "import sys, auditlog.trail.offline as o; assert 'django' not in sys.modules; sys.exit(o.main())",
    ]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}

    checked = subprocess.run(
        [*offline, "bundle", "--vkey", signer.verifier().text(), str(bundle)],
        env=env,
        capture_output=True,
        text=True,
    )

    assert checked.returncode == 0, checked.stderr
    assert "reproduce the signed root of 1500 leaves" in checked.stdout
    assert "signed retention record(s) say a purge removed them" in checked.stdout
    lines = bundle.read_text().splitlines()
    header = json.loads(lines[0])
    header["retention"] = header["retention"][:-1]  # the last purge's record left out: the gap shows
    unrecorded = tmp_path / "unrecorded.jsonl"
    unrecorded.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    refused = subprocess.run(
        [*offline, "bundle", "--vkey", signer.verifier().text(), str(unrecorded)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1 and "were removed without a record" in refused.stderr
    assert json.loads(lines[0])["prefix"]["size"] == 1500 - (len(lines) - 1) > 0
    tampered = lines[:]
    tampered[3] = json.dumps({**json.loads(lines[3]), "actor_id": "mallory"}, ensure_ascii=False)
    bundle.write_text("\n".join(tampered) + "\n")
    refused = subprocess.run(
        [*offline, "bundle", "--vkey", signer.verifier().text(), str(bundle)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1


def test_the_admin_exports_a_bundle_the_offline_verifier_accepts(signer, admin_client, tmp_path):
    url = "/admin/auditlog/actionlog/export/bundle/"
    assert admin_client.get(url).status_code == 302  # no checkpoint yet: a message, not a file
    assert 'id="export-bundle"' not in admin_client.get("/admin/auditlog/actionlog/").content.decode()
    demo(400, 7)
    seal(block_size=150)
    assert 'id="export-bundle"' in admin_client.get("/admin/auditlog/actionlog/").content.decode()

    response = admin_client.get(url)

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="audit-trail-bundle-')
    bundle = tmp_path / "bundle.jsonl"
    bundle.write_bytes(b"".join(response.streaming_content))
    assert len(bundle.read_text().splitlines()) == 1 + tree_size_now()  # the header, then every leaf
    offline = [sys.executable, "-m", "auditlog.trail.offline", "bundle", "--vkey", signer.verifier().text()]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    checked = subprocess.run([*offline, str(bundle)], env=env, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert ActionLog.objects.filter(action="auditlog.events.export", metadata__format="bundle").exists()
