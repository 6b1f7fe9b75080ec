"""docs/trail-format.md cannot drift from the code: every test vector in it (a fenced block
```vector name=...```) is recomputed here from the project's own code and compared as text, and
the document's signed notes and proofs are checked by Go's x/mod sumdb (tests/independent)."""

import base64
import functools
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from unittest import mock
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.events.formats import LEAF_V1
from auditlog.models import TrailLeaf
from auditlog.trail import bundle, jcs, merkle, offline
from auditlog.trail.note import Checkpoint, Signer, note_open
from auditlog.trail.retention import PurgePlan, retention_record
from tests.independent import tlogcheck

DOC = Path(__file__).resolve().parent.parent / "docs" / "trail-format.md"
# Python's re reads only "\n" as a line end, never U+2028, which a leaf holds as is.
VECTOR = re.compile(r"^```vector name=([a-z0-9-]+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

# --- the inputs ---------------------------------------------------------------------------------

ORIGIN = "audit.example.com/log"
SEED = bytes(range(32))
TIME_3 = int(datetime(2026, 1, 31, 12, 0, tzinfo=UTC).timestamp())  # 1769860800
TIME_7 = TIME_3 + 60
SOURCE = "ab12cd34"
ALG_ED25519 = b"\x01"
DETAILED = (0, 3, 5)  # the leaves the document shows as objects and hex too


def simple_event(i: int) -> dict:
    at = datetime(2026, 1, 31, 10, 59, 54, tzinfo=UTC) + timedelta(seconds=i + (i > 5))
    return {
        "uuid": UUID(f"01935f6e-7c3a-7000-8000-{0x100 + i:012x}"),
        "occurred_at": at,
        "received_at": at,
        "action": "record.view",
        "actor_id": f"u-{i}",
        "actor_type": "user",
        "actor_name": "",
        "target_type": "record",
        "target_id": str(i),
        "target_name": "",
        "outcome": "success",
        "ip_address": f"198.51.100.{i}",
        "user_agent": "",
        "metadata": {},
        "idempotency_key": None,
        "source_id": SOURCE,
        "payload_hash": hashlib.sha256(f"payload {i}".encode()).hexdigest(),
    }


def events() -> list[dict]:
    """The 7 events of the document's tree, leaf i being events()[i]."""
    found = [simple_event(i) for i in range(7)]
    found[0] |= {
        "received_at": datetime(2026, 1, 31, 10, 59, 54, 123000, tzinfo=UTC),
        "action": "user.login",
        "actor_id": "grace",
        "actor_name": "Grace Hopper",
        "target_type": "",
        "target_id": "",
        "outcome": "failure",
        "ip_address": None,
        "metadata": {"attempts": 3, "ratio": 0.1, "delta": -1.5e-7, "whole": 2.0, "method": "password"},
        "idempotency_key": "login-0001",
    }
    found[3] |= {
        "occurred_at": datetime(2026, 1, 31, 5, 59, 57, 250000, tzinfo=timezone(timedelta(hours=-5))),
        "received_at": datetime(2026, 1, 31, 10, 59, 57, 500000, tzinfo=UTC),
        "action": "file.upload",
        "actor_id": "svc:backup",
        "actor_type": "service",
        "actor_name": 'Backup "nightly"',
        "target_type": "file",
        "target_id": "C:\\backups\\2026-01-31.tar",
        "target_name": "two\nlines\tand \x1f",
        "ip_address": "2001:db8::7",
        "user_agent": "backup/3.1 (\u00e9t\u00e9)",
        "metadata": {
            "e": 1,
            "\u00e9": 2,
            "\u20ac": 3,
            "\U0001f600": 4,
            "\ufb01": 5,
            "nested": {"empty": [], "object": {}, "flag": False, "none": None},
            "para": "a\u2029b",
        },
    }
    # The event of tests/test_formats.py's golden leaf (LEAF_GOLDEN_VALUES), leaf 5 there too.
    found[5] = {
        "uuid": UUID("01935f6e-7c3a-7000-8000-000000000001"),
        "occurred_at": datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        "received_at": datetime(2026, 1, 31, 12, 0, 0, 250001, tzinfo=timezone(timedelta(hours=1))),
        "action": "document.share",
        "actor_id": "42",
        "actor_type": "user",
        "actor_name": "Zo\u00eb \u00c5ngstr\u00f6m \u5c71\u7530",
        "target_type": "document",
        "target_id": "7",
        "target_name": "R\u00e9sum\u00e9 \U0001f4c4",
        "outcome": "failure",
        "ip_address": "2001:db8::1",
        "user_agent": "app/2.0",
        "metadata": {"b": [1, 2.5, None, True], "a": "\u2028x", "\U0001f602": 1, "\ufb33": 2},
        "idempotency_key": None,
        "source_id": "ab12cd34",
        "payload_hash": "f" * 64,
    }
    return found


def values(event: dict) -> tuple:
    assert event.keys() == set(LEAF_V1.fields)
    return tuple(event[field] for field in LEAF_V1.fields)


def signer() -> Signer:
    public = (
        Ed25519PrivateKey.from_private_bytes(SEED).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    key_id = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + public).digest()[:4]
    return Signer.parse(f"PRIVATE+KEY+{ORIGIN}+{key_id.hex()}+{b64(ALG_ED25519 + SEED)}")


# --- the vectors --------------------------------------------------------------------------------


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def hash_lines(hashes: list[bytes]) -> str:
    return "\n".join(f"{value.hex()} {b64(value)}" for value in hashes)


def wrapped_hex(data: bytes, width: int = 64) -> str:
    text = data.hex()
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


def leaves() -> list[bytes]:
    return [LEAF_V1.leaf(i, values(event)) for i, event in enumerate(events())]


def reader(leaf_hashes: list[bytes]) -> merkle.NodeReader:
    def read(height: int, index: int) -> bytes:
        return merkle.root_of(leaf_hashes[index << height : (index + 1) << height])

    return read


def checkpoint_note(size: int, extensions: tuple[str, ...]) -> str:
    root = merkle.root_of([merkle.leaf_hash(leaf) for leaf in leaves()[:size]])
    return signer().sign(Checkpoint(ORIGIN, size, root, extensions).text())


@functools.cache
def vectors() -> dict[str, str]:
    """Every vector of the document but the retention record's (which needs the database)."""
    key = signer()
    found = {
        "key-seed": SEED.hex(),
        "key-signer": key.text(),
        "key-vkey": key.verifier().text(),
    }
    all_leaves = leaves()
    hashes = [merkle.leaf_hash(leaf) for leaf in all_leaves]
    for i, (event, leaf) in enumerate(zip(events(), all_leaves, strict=True)):
        assert leaf == jcs.canonical(LEAF_V1.obj(i, values(event)))  # the fast path and the object's
        if i in DETAILED:
            found[f"leaf-{i}-object"] = json.dumps(LEAF_V1.obj(i, values(event)), indent=2, ensure_ascii=True)
            found[f"leaf-{i}-hex"] = wrapped_hex(leaf)
        found[f"leaf-{i}-bytes"] = leaf.decode("utf-8")
        found[f"leaf-{i}-hash"] = hashes[i].hex()
    read = reader(hashes)
    found["tree-roots"] = "\n".join(
        f"{size} {merkle.tree_root(read, size).hex()} {b64(merkle.tree_root(read, size))}"
        for size in range(8)
    )
    found["inclusion-3-in-7"] = hash_lines(merkle.inclusion_proof(read, 3, 7))
    found["inclusion-5-in-6"] = hash_lines(merkle.inclusion_proof(read, 5, 6))
    found["consistency-3-to-7"] = hash_lines(merkle.consistency_proof(read, 3, 7))
    found["consistency-4-to-6"] = hash_lines(merkle.consistency_proof(read, 4, 6))
    found["checkpoint-3"] = checkpoint_note(3, (f"time {TIME_3}",))
    found["checkpoint-7"] = checkpoint_note(7, (f"time {TIME_7}", f"previous 3 {TIME_3}"))
    header = {
        "format": bundle.FORMAT,
        "checkpoint": found["checkpoint-7"],
        "prefix": {"size": 2, "hashes": [b64(value) for value in merkle.compact_range_hashes(read, 2)]},
    }
    lines = [bundle._line(header)]
    lines += [bundle._line(LEAF_V1.obj(i, values(events()[i]))) for i in range(2, 7)]
    found["bundle-example"] = "\n".join(lines)
    return found


RETENTION_NOW = datetime(2026, 1, 31, 12, 5, tzinfo=UTC)
RETENTION_PLAN = PurgePlan(
    cutoff=datetime(2025, 1, 31, 12, 5, tzinfo=UTC),
    through_id=3,
    count=3,
    unsealed_old=0,
    policy="events received more than 365 days ago",
)


def retention_note() -> str:
    """The retention record of a purge of events 1 to 3, leaves 0 to 2 (needs the database)."""
    TrailLeaf.objects.bulk_create(
        TrailLeaf(leaf_index=i, event_id=i + 1, leaf_hash=merkle.leaf_hash(leaf))
        for i, leaf in enumerate(leaves())
    )
    with (
        mock.patch("auditlog.trail.retention.timezone.now", return_value=RETENTION_NOW),
        sqlite_writer_queue(),
    ):
        return retention_record(signer(), 3, 3, RETENTION_PLAN).note


# --- the document -------------------------------------------------------------------------------


def document_vectors() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    found = {}
    for match in VECTOR.finditer(text):
        assert match[1] not in found, f"two vectors named {match[1]}"
        found[match[1]] = match[2].removesuffix("\n")
    assert text.count("```vector") == len(found), "a vector block the pattern does not read"
    return found


@pytest.fixture(scope="module")
def doc() -> dict[str, str]:
    return document_vectors()


def test_the_document_holds_every_vector_and_no_other(doc):
    assert sorted(doc) == sorted([*vectors(), "retention-note"])


@pytest.mark.parametrize("name", sorted(vectors()))
def test_vector(doc, name):
    # A block ends where its last line does: a note's final newline is the fence's.
    assert doc[name] == vectors()[name].removesuffix("\n")


@pytest.mark.django_db
@pytest.mark.usefixtures("maintenance_role")
def test_retention_record_vector(doc):
    assert doc["retention-note"] == retention_note().removesuffix("\n")


# --- the document's values, checked as an outside verifier would -------------------------------


def hashes_of(text: str) -> list[bytes]:
    """The hashes of a proof vector, from its hex, after checking its base64 says the same."""
    found = []
    for line in text.split("\n"):
        hex_text, b64_text = line.split(" ")
        assert base64.b64decode(b64_text, validate=True) == bytes.fromhex(hex_text)
        found.append(bytes.fromhex(hex_text))
    return found


def roots(doc) -> dict[int, bytes]:
    found = {}
    for line in doc["tree-roots"].split("\n"):
        size, hex_text, b64_text = line.split(" ")
        assert base64.b64decode(b64_text, validate=True) == bytes.fromhex(hex_text)
        found[int(size)] = bytes.fromhex(hex_text)
    return found


def test_leaf_hashes_follow_from_the_leaf_bytes(doc):
    for i in range(7):
        leaf = doc[f"leaf-{i}-bytes"].encode("utf-8")
        if i in DETAILED:
            assert bytes.fromhex(doc[f"leaf-{i}-hex"].replace("\n", "")) == leaf
            assert json.loads(doc[f"leaf-{i}-object"]) == json.loads(leaf)
        assert hashlib.sha256(b"\x00" + leaf).hexdigest() == doc[f"leaf-{i}-hash"]
    assert "\u2028" in doc["leaf-5-bytes"]  # as is, not escaped


def test_proofs_verify_against_the_roots(doc):
    root = roots(doc)
    leaf_hash = {i: bytes.fromhex(doc[f"leaf-{i}-hash"]) for i in range(7)}
    assert root[0] == hashlib.sha256(b"").digest()
    merkle.inclusion_verify(leaf_hash[3], 3, 7, hashes_of(doc["inclusion-3-in-7"]), root[7])
    merkle.inclusion_verify(leaf_hash[5], 5, 6, hashes_of(doc["inclusion-5-in-6"]), root[6])
    merkle.consistency_verify(3, 7, root[3], root[7], hashes_of(doc["consistency-3-to-7"]))
    merkle.consistency_verify(4, 6, root[4], root[6], hashes_of(doc["consistency-4-to-6"]))


def test_the_key_and_signatures_are_as_the_document_describes(doc):
    # The key id: SHA-256(name || "\n" || 0x01 || public key)[:4]; the signature line: an em dash,
    # the key name, base64(key id || Ed25519 signature of the body).
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(doc["key-seed"]))
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + public).digest()[:4]
    assert doc["key-vkey"] == f"{ORIGIN}+{key_id.hex()}+{b64(ALG_ED25519 + public)}"
    for name in ("checkpoint-3", "checkpoint-7", "retention-note"):
        note = doc[name] + "\n"
        body, signature_line = note.split("\n\n")
        dash, key_name, blob = signature_line.removesuffix("\n").split(" ")
        assert (dash, key_name) == ("\u2014", ORIGIN)
        raw = base64.b64decode(blob, validate=True)
        assert raw[:4] == key_id and len(raw) == 68
        private.public_key().verify(raw[4:], (body + "\n").encode())
        assert note_open(note, [signer().verifier()]) == body + "\n"
    root = roots(doc)
    assert Checkpoint.parse(doc["checkpoint-7"].split("\n\n")[0] + "\n") == Checkpoint(
        ORIGIN, 7, root[7], (f"time {TIME_7}", f"previous 3 {TIME_3}")
    )


def test_the_bundle_example_verifies_offline(doc, tmp_path, capsys):
    path = tmp_path / "export.jsonl"
    path.write_text(doc["bundle-example"] + "\n", encoding="utf-8")

    assert offline.main(["bundle", "--vkey", doc["key-vkey"], str(path)]) == 0
    assert "bundle: OK, 5 events reproduce the signed root of 7 leaves" in capsys.readouterr().out


# --- Go's x/mod sumdb ------------------------------------------------------------------------------


def test_go_verifies_the_documents_notes_and_proofs(doc, tmp_path):
    tlogcheck.require()
    vkey = doc["key-vkey"]
    root = roots(doc)
    notes = {3: doc["checkpoint-3"] + "\n", 7: doc["checkpoint-7"] + "\n"}
    # Checkpoints of 4 and 6 leaves, signed here with the document's key over its roots.
    for size in (4, 6):
        notes[size] = signer().sign(Checkpoint(ORIGIN, size, root[size], (f"time {TIME_3}",)).text())
    for size, note in notes.items():
        (tmp_path / f"{size}.note").write_text(note, encoding="utf-8")
    for size in (3, 7):
        result = tlogcheck.run("note", "-vkey", vkey, "-note", tmp_path / f"{size}.note")
        assert result.returncode == 0, result.stderr
        assert result.stdout == doc[f"checkpoint-{size}"].split("\n\n")[0] + "\n"

    for index, size in ((3, 7), (5, 6)):
        proof = {
            "leaf_index": index,
            "tree_size": size,
            "leaf": b64(doc[f"leaf-{index}-bytes"].encode("utf-8")),
            "hashes": [b64(value) for value in hashes_of(doc[f"inclusion-{index}-in-{size}"])],
        }
        (tmp_path / "inclusion.json").write_text(json.dumps(proof))
        result = tlogcheck.run(
            "inclusion",
            "-vkey",
            vkey,
            "-checkpoint",
            tmp_path / f"{size}.note",
            "-proof",
            tmp_path / "inclusion.json",
        )
        assert result.returncode == 0, result.stderr

    for first, second in ((3, 7), (4, 6)):
        proof = {
            "first": first,
            "second": second,
            "hashes": [b64(value) for value in hashes_of(doc[f"consistency-{first}-to-{second}"])],
        }
        (tmp_path / "consistency.json").write_text(json.dumps(proof))
        result = tlogcheck.run(
            "consistency",
            "-vkey",
            vkey,
            "-old",
            tmp_path / f"{first}.note",
            "-new",
            tmp_path / f"{second}.note",
            "-proof",
            tmp_path / "consistency.json",
        )
        assert result.returncode == 0, result.stderr
