"""The auditor's offline verifier (auditlog.trail.offline), run as a subprocess without Django
on the checkpoints, proofs and bundles of a sealed trail, and the compact-range helpers it and
the bundle writer share (auditlog.trail.merkle)."""

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.management import call_command

from auditlog.events.formats import LEAF_V1
from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog, Scope, TrailLeaf
from auditlog.trail import jcs, merkle
from auditlog.trail.leaf_rows import LEAF_COLUMNS
from auditlog.trail.note import Checkpoint as CheckpointBody
from auditlog.trail.note import Signer
from auditlog.trail.offline import BUNDLE_FORMAT
from auditlog.trail.tree import StoredTree, tree_append
from tests.conftest import ApiClient

ORIGIN = "audit.example/log"
ROOT = Path(__file__).resolve().parent.parent
# Runs the verifier in a fresh interpreter and fails if anything imported Django on the way.
RUNNER = (
    "import sys, auditlog.trail.offline as o; assert 'django' not in sys.modules; rc = o.main();"
    " assert 'django' not in sys.modules, 'the verifier imported Django'; sys.exit(rc)"
)


# --- compact ranges ---------------------------------------------------------------------------


def synthetic(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]


def reader(hashes: list[bytes]):
    def read(height: int, index: int) -> bytes:
        start = index << height
        assert start + (1 << height) <= len(hashes), "read a node that is not complete"
        return merkle.root_of(hashes[start : start + (1 << height)])

    return read


def test_compact_ranges_give_the_tree_root_for_every_split():
    hashes = synthetic(300)
    read = reader(hashes)
    for size in range(301):
        prefix = merkle.compact_range_hashes(read, size)
        assert len(prefix) == size.bit_count()
        assert merkle.compact_range_root(prefix, size) == merkle.tree_root(read, size)
    for size in (0, 1, 2, 3, 7, 8, 9, 100, 255, 256, 257, 300):
        root = merkle.tree_root(read, size)
        for start in range(size + 1):
            prefix = merkle.compact_range_hashes(read, start)
            assert merkle.compact_root(prefix, start, iter(hashes[start:size])) == root, (start, size)


def test_compact_ranges_over_the_stored_tree_cross_stored_heights():
    """Large sizes: the prefix of a big tree is a handful of hashes, and appending from any
    point gives the root the tree computes."""
    hashes = synthetic(70_000)
    read = reader(hashes)
    for start, size in ((0, 1), (65_535, 65_537), (65_536, 70_000), (4_097, 70_000), (69_999, 70_000)):
        prefix = merkle.compact_range_hashes(read, start)
        assert merkle.compact_root(prefix, start, hashes[start:size]) == merkle.root_of(hashes[:size])


def test_compact_range_refuses_a_wrong_number_of_hashes():
    hashes = synthetic(8)
    prefix = merkle.compact_range_hashes(reader(hashes), 5)  # 0b101: two hashes
    with pytest.raises(merkle.ProofError, match="one per set bit"):
        merkle.compact_root(prefix[:1], 5, hashes[5:])
    with pytest.raises(merkle.ProofError, match="one per set bit"):
        merkle.compact_range_root(prefix, 7)
    with pytest.raises(merkle.ProofError, match="32 bytes"):
        merkle.compact_root([prefix[0], b"short"], 5, hashes[5:])


# --- a sealed trail ---------------------------------------------------------------------------


@pytest.fixture
def signer(settings, maintenance_role):
    signer = Signer.generate(ORIGIN)
    settings.AUDITLOG_TRAIL_KEY = signer.text()
    settings.AUDITLOG_TRAIL_OLD_VERIFIER_KEYS = []
    settings.AUDITLOG_TRAIL_VERIFIER_KEYS = []
    settings.AUDITLOG_SEAL_DELAY_SECONDS = 0
    return signer


@pytest.fixture
def reader_api(client, signer):
    return ApiClient(client, api_key_create(name="auditor", scopes={Scope.READ_ALL})[1])


def grow(count: int, seed: int) -> str:
    """Add `count` demo events, seal them; the new checkpoint's note."""
    call_command("auditlog_demo", "--count", str(count), "--seed", str(seed), stdout=io.StringIO())
    upto = ActionLog.objects.order_by("-id").values_list("id", flat=True).first()
    return tree_append(upto_id=upto, block_size=97).checkpoint.note


def leaf_objects(start: int, end: int) -> list[dict]:
    """LEAF_V1 objects of leaves [start, end), from the database, in leaf order."""
    events = dict(
        TrailLeaf.objects.filter(leaf_index__gte=start, leaf_index__lt=end).values_list(
            "leaf_index", "event_id"
        )
    )
    rows = {
        row[0]: row[1:]
        for row in ActionLog.objects.filter(id__in=events.values()).values_list("id", *LEAF_COLUMNS)
    }
    return [LEAF_V1.obj(index, rows[events[index]]) for index in range(start, end)]


def bundle_lines(note: str, start: int = 0, *, prefix: bool = True) -> list[str]:
    """An auditlog-bundle/v1 as a list of lines: header, then the leaves from `start` to the
    checkpoint's size, written as plain (not canonical) JSON."""
    size = int(note.split("\n")[1])
    header = {"format": BUNDLE_FORMAT, "checkpoint": note}
    if prefix:
        hashes = merkle.compact_range_hashes(StoredTree().read, start)
        header["prefix"] = {"size": start, "hashes": [base64.b64encode(h).decode() for h in hashes]}
    return [json.dumps(header)] + [json.dumps(obj, ensure_ascii=False) for obj in leaf_objects(start, size)]


def write(path: Path, content: str | list[str]) -> str:
    if isinstance(content, list):
        content = "".join(f"{line}\n" for line in content)
    path.write_text(content, encoding="utf-8")
    return str(path)


def verify(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """The verifier in a fresh interpreter that has no Django settings to find."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "AUDITLOG_TOKEN")
    }
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *map(str, args)],
        cwd=ROOT,
        env=environment | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout


def failed(result: subprocess.CompletedProcess, code: int = 1) -> str:
    """The one line a failure writes."""
    assert result.returncode == code, result
    assert result.stdout == "" and result.stderr.count("\n") == 1, result
    return result.stderr


@pytest.fixture
def trail(signer, reader_api, tmp_path):
    """A trail sealed twice, 300 then 500 events, with the checkpoints and vkey as files."""
    old = grow(300, 2)
    new = grow(200, 3)
    assert reader_api.get("/api/v1/trail/checkpoint").content.decode() == new
    vkey = reader_api.client.get("/api/v1/trail/verifier-keys").content.decode()
    return {
        "old": old,
        "new": new,
        "old_file": write(tmp_path / "old.note", old),
        "new_file": write(tmp_path / "new.note", new),
        "vkey": signer.verifier().text(),
        "vkey_file": write(tmp_path / "trail.vkeys", vkey),
    }


# --- checkpoints ------------------------------------------------------------------------------


def test_help_runs_without_django():
    result = verify("--help")
    assert result.returncode == 0 and "bundle" in result.stdout and "Exit status" in result.stdout
    result = verify("bundle", "--help")
    assert result.returncode == 0 and BUNDLE_FORMAT in result.stdout and "prefix" in result.stdout
    assert verify("checkpoint").returncode == 2  # no --vkey
    assert verify("nonsense").returncode == 2


def test_a_checkpoint_verifies_and_is_described(trail):
    out = ok(verify("checkpoint", "--vkey", trail["vkey_file"], trail["new_file"]))

    body = CheckpointBody.parse(trail["new"].rpartition("\n\n")[0] + "\n")
    assert f"origin: {ORIGIN}\n" in out and "size: 500\n" in out
    assert f"root: {base64.b64encode(body.root).decode()}\n" in out
    assert f"time: {body.time} (" in out
    ok(verify("checkpoint", "--vkey", trail["vkey"], "--origin", ORIGIN, trail["new_file"]))


def test_a_tampered_note_a_wrong_key_and_a_bad_key(trail, tmp_path):
    tampered = write(tmp_path / "tampered.note", trail["new"].replace("\n500\n", "\n501\n", 1))
    stranger = Signer.generate(ORIGIN).verifier().text()
    other_origin = Signer.generate("another.example/log").verifier().text()

    assert "does not verify" in failed(verify("checkpoint", "--vkey", trail["vkey"], tampered))
    assert "no signature by a known key" in failed(
        verify("checkpoint", "--vkey", stranger, trail["new_file"])
    )
    assert "no signature" in failed(verify("checkpoint", "--vkey", other_origin, trail["new_file"]))
    assert "origin" in failed(
        verify("checkpoint", "--vkey", trail["vkey"], "--origin", "x", trail["new_file"])
    )
    assert "--vkey 'nonsense': no such file" in failed(
        verify("checkpoint", "--vkey", "nonsense", trail["new_file"]), 2
    )
    assert "cannot read" in failed(verify("checkpoint", "--vkey", trail["vkey"], tmp_path / "none"), 2)


# --- inclusion and consistency ----------------------------------------------------------------


def test_inclusion(trail, reader_api, tmp_path):
    event = ActionLog.objects.order_by("id")[123]
    proof = reader_api.get(f"/api/v1/events/{event.uuid}/proof").json()
    good = write(tmp_path / "proof.json", json.dumps(proof))

    out = ok(verify("inclusion", "--vkey", trail["vkey"], "--checkpoint", trail["new_file"], good))

    assert f"event: {event.uuid}\n" in out and "leaf_index: 123\n" in out and "size: 500\n" in out

    # A proof for another tree size, a wrong hash, another event's leaf.
    older = reader_api.get(f"/api/v1/events/{event.uuid}/proof", tree_size=300).content.decode()
    older_file = write(tmp_path / "older.json", older)
    result = verify("inclusion", "--vkey", trail["vkey"], "--checkpoint", trail["new_file"], older_file)
    assert "tree of 300 leaves" in failed(result)
    ok(verify("inclusion", "--vkey", trail["vkey"], "--checkpoint", trail["old_file"], older_file))

    bad_hash = dict(proof, hashes=[base64.b64encode(b"\x00" * 32).decode()] + proof["hashes"][1:])
    result = verify(
        "inclusion",
        "--vkey",
        trail["vkey"],
        "--checkpoint",
        trail["new_file"],
        write(tmp_path / "b.json", json.dumps(bad_hash)),
    )
    assert f"event {event.uuid} is not leaf 123" in failed(result)

    leaf = json.loads(base64.b64decode(proof["leaf"]))
    leaf["actor_id"] = "mallory"
    changed = dict(proof, leaf=base64.b64encode(jcs.canonical(leaf)).decode())
    result = verify(
        "inclusion",
        "--vkey",
        trail["vkey"],
        "--checkpoint",
        trail["new_file"],
        write(tmp_path / "c.json", json.dumps(changed)),
    )
    assert "is not leaf 123" in failed(result)

    moved = dict(proof, leaf_index=124)
    result = verify(
        "inclusion",
        "--vkey",
        trail["vkey"],
        "--checkpoint",
        trail["new_file"],
        write(tmp_path / "m.json", json.dumps(moved)),
    )
    assert "leaf_index 123, expected 124" in failed(result)


def test_consistency(trail, reader_api, tmp_path):
    proof = reader_api.get("/api/v1/trail/consistency", first=300, second=500).json()
    good = write(tmp_path / "consistency.json", json.dumps(proof))
    args = ("consistency", "--vkey", trail["vkey"])

    out = ok(verify(*args, "--old", trail["old_file"], "--new", trail["new_file"], good))

    assert "the tree of 500 leaves extends the tree of 300 leaves" in out
    result = verify(*args, "--old", trail["new_file"], "--new", trail["old_file"], good)
    assert "the log shrank from 500 to 300 leaves" in failed(result)
    bad = dict(proof, hashes=proof["hashes"][:-1])
    result = verify(
        *args,
        "--old",
        trail["old_file"],
        "--new",
        trail["new_file"],
        write(tmp_path / "bad.json", json.dumps(bad)),
    )
    assert "does not extend the tree of 300 leaves" in failed(result)
    assert "consistency proof" in failed(
        verify(*args, "--old", trail["old_file"], "--new", trail["new_file"]), 2
    )


# --- bundles ----------------------------------------------------------------------------------


def test_bundles_verify_whole_and_after_a_prefix(trail, tmp_path):
    args = ("bundle", "--vkey", trail["vkey"])

    out = ok(verify(*args, write(tmp_path / "all.jsonl", bundle_lines(trail["new"]))))
    assert "500 events reproduce the signed root of 500 leaves" in out and "prefix: none" in out

    ok(verify(*args, write(tmp_path / "no-prefix.jsonl", bundle_lines(trail["new"], prefix=False))))
    out = ok(verify(*args, write(tmp_path / "after.jsonl", bundle_lines(trail["new"], 37))))  # 0b100101
    assert "463 events" in out and "leaves 0 to 36 are attested by 3 hashes" in out
    out = ok(verify(*args, write(tmp_path / "none.jsonl", bundle_lines(trail["new"], 500))))
    assert "0 events" in out
    ok(verify(*args, write(tmp_path / "old.jsonl", bundle_lines(trail["old"], 256))))


def test_bundles_that_do_not_verify(trail, tmp_path):
    args = ("bundle", "--vkey", trail["vkey"])
    lines = bundle_lines(trail["new"], 37)

    def check(name: str, content: list[str]) -> str:
        return failed(verify(*args, write(tmp_path / f"{name}.jsonl", content)))

    # A changed event: only the root can tell.
    event = json.loads(lines[11])
    event["actor_name"] = (event["actor_name"] or "") + "x"
    assert "do not reproduce the checkpoint's root" in check(
        "changed", lines[:11] + [json.dumps(event)] + lines[12:]
    )

    # Metadata as its JSON text instead of the object: the same characters, another leaf.
    at = next(i for i, line in enumerate(lines[1:], 1) if json.loads(line)["metadata"])
    event = json.loads(lines[at])
    event["metadata"] = json.dumps(event["metadata"], sort_keys=True, separators=(",", ":"))
    swapped = lines[:at] + [json.dumps(event)] + lines[at + 1 :]
    assert "do not reproduce the checkpoint's root" in check("swapped", swapped)

    # A wrong prefix hash.
    header = json.loads(lines[0])
    header["prefix"]["hashes"][1] = base64.b64encode(b"\x01" * 32).decode()
    assert "do not reproduce the checkpoint's root" in check("prefix", [json.dumps(header)] + lines[1:])

    # Lines missing, duplicated, out of order, cut short, one too many, not JSON: named.
    result = check("missing", lines[:11] + lines[12:])
    assert "line 12: leaf_index 48 where 47 was due: leaf 47 is missing" in result
    assert "line 13: leaf_index 47 after 47: a duplicate" in check("duplicate", lines[:12] + lines[11:])
    assert "line 12: leaf_index 48 where 47" in check(
        "swapped-lines", lines[:11] + [lines[12], lines[11]] + lines[13:]
    )
    assert "leaves 498 to 499 of the checkpoint's 500 are missing" in check("short", lines[:-2])
    assert "line 465: one line too many" in check("long", lines + [lines[-1]])
    assert "line 5 is not JSON" in check("broken", lines[:4] + [lines[4][:-1]] + lines[5:])
    assert "line 5 is not JSON: duplicate member name" in check(
        "dupkey", lines[:4] + [lines[4][:-1] + ', "v": 1}'] + lines[5:]
    )
    # The header: a prefix that does not match its size, another format, a tampered checkpoint.
    header = json.loads(lines[0])
    header["prefix"]["size"] = 39
    assert "one per set bit" in check("prefix-size", [json.dumps(header)] + lines[1:])
    header = json.loads(lines[0])
    header["format"] = "auditlog-bundle/v2"
    assert "auditlog-bundle/v2" in check("format", [json.dumps(header)] + lines[1:])
    header = json.loads(lines[0])
    header["checkpoint"] = header["checkpoint"].replace("\n500\n", "\n499\n", 1)
    assert "does not verify" in check("note", [json.dumps(header)] + lines[1:])


# --- the state file ---------------------------------------------------------------------------


def test_the_state_follows_a_growing_log_and_refuses_truncation_and_rewrites(
    trail, signer, reader_api, tmp_path
):
    state = tmp_path / "trail.state"
    args = ("checkpoint", "--vkey", trail["vkey"], "--state", state)

    assert "trusted on first use" in ok(verify(*args, trail["old_file"]))
    assert state.stat().st_mode & 0o777 == 0o600
    assert json.loads(state.read_text())["size"] == 300
    assert "same tree" in ok(verify(*args, trail["old_file"]))

    # Grown: refused without a consistency proof (state unchanged), accepted with one.
    assert "give a consistency proof" in failed(verify(*args, trail["new_file"]), 2)
    assert json.loads(state.read_text())["size"] == 300
    wrong = reader_api.get("/api/v1/trail/consistency", first=200, second=500).content.decode()
    result = verify(*args, "--consistency-proof", write(tmp_path / "wrong.json", wrong), trail["new_file"])
    assert "from 200 to 500 leaves, not from 300 to 500" in failed(result)
    proof = write(
        tmp_path / "c.json",
        reader_api.get("/api/v1/trail/consistency", first=300, second=500).content.decode(),
    )
    assert "grew from 300 to 500 leaves" in ok(verify(*args, "--consistency-proof", proof, trail["new_file"]))
    assert json.loads(state.read_text())["size"] == 500
    assert list(tmp_path.glob(".trail.state.*")) == []  # no temporary file left behind

    # Truncated: the old checkpoint is refused now.
    assert "the log shrank from 500 to 300 leaves: truncation or a rewrite" in failed(
        verify(*args, trail["old_file"])
    )

    # Rewritten: another tree of 500 leaves, signed by the log's own key.
    body = CheckpointBody.parse(trail["new"].rpartition("\n\n")[0] + "\n")
    forged = CheckpointBody(
        ORIGIN, 500, hashlib.sha256(b"another history").digest(), (f"time {body.time + 60}",)
    )
    forged_file = write(tmp_path / "forged.note", signer.sign(forged.text()))
    ok(verify("checkpoint", "--vkey", trail["vkey"], forged_file))  # a valid signature on its own
    assert "the history was rewritten" in failed(verify(*args, forged_file))
    # ... and as a grown log, a consistency proof from the remembered tree fails.
    bigger = CheckpointBody(
        ORIGIN, 501, hashlib.sha256(b"another history").digest(), (f"time {body.time + 60}",)
    )
    bigger_file = write(tmp_path / "bigger.note", signer.sign(bigger.text()))
    other = write(tmp_path / "o.json", json.dumps({"first": 500, "second": 501, "hashes": []}))
    assert "does not extend the tree of 500 leaves" in failed(
        verify(*args, "--consistency-proof", other, bigger_file)
    )
    assert json.loads(state.read_text())["size"] == 500

    # Another log's checkpoint against this state.
    stranger = Signer.generate("another.example/log")
    alien = CheckpointBody("another.example/log", 500, body.root, (f"time {body.time}",))
    alien_file = write(tmp_path / "alien.note", stranger.sign(alien.text()))
    result = verify("checkpoint", "--vkey", stranger.verifier().text(), "--state", state, alien_file)
    assert "is not the state's" in failed(result)

    # A damaged state is a usage error, not a pass.
    state.write_text("{}")
    assert "damaged" in failed(verify(*args, trail["new_file"]), 2)


def test_the_state_across_commands(trail, reader_api, tmp_path):
    """inclusion, consistency and bundle accept their checkpoint against the state, too."""
    state = tmp_path / "trail.state"
    common = ("--vkey", trail["vkey"], "--state", state)
    event = ActionLog.objects.order_by("id")[5]
    proof = write(
        tmp_path / "p.json",
        reader_api.get(f"/api/v1/events/{event.uuid}/proof", tree_size=300).content.decode(),
    )
    consistency = write(
        tmp_path / "c.json",
        reader_api.get("/api/v1/trail/consistency", first=300, second=500).content.decode(),
    )

    ok(verify("inclusion", *common, "--checkpoint", trail["old_file"], proof))
    ok(verify("bundle", *common, write(tmp_path / "old.jsonl", bundle_lines(trail["old"], 100))))
    # The new bundle needs a proof of 300 -> 500 ...
    bundle = write(tmp_path / "new.jsonl", bundle_lines(trail["new"], 300))
    assert "give a consistency proof" in failed(verify("bundle", *common, bundle), 2)
    # ... which the consistency command verifies and uses.
    out = ok(
        verify("consistency", *common, "--old", trail["old_file"], "--new", trail["new_file"], consistency)
    )
    assert "grew from 300 to 500" in out
    ok(verify("bundle", *common, bundle))
    # The old bundle, now, is a truncated log.
    assert "shrank from 500 to 300" in failed(verify("bundle", *common, tmp_path / "old.jsonl"))


# --- over the network -------------------------------------------------------------------------


class Recorded(BaseHTTPRequestHandler):
    """Answers GETs from a dict of recorded responses (the Django test client's), if the bearer
    token is right."""

    responses: dict[str, tuple[int, bytes]] = {}
    token = ""
    seen: list[str] = []

    def do_GET(self):
        self.seen.append(self.path)
        status, body = (
            self.responses.get(self.path, (404, b'{"error": "not recorded"}'))
            if self.headers.get("Authorization") == f"Bearer {self.token}"
            else (401, b'{"error": "unauthorized"}')
        )
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorded():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetching_with_url_and_token(trail, reader_api, recorded, tmp_path):
    server, base = recorded
    event = ActionLog.objects.order_by("id")[400]
    paths = [
        "/api/v1/trail/checkpoint",
        f"/api/v1/events/{event.uuid}/proof?tree_size=500",
        "/api/v1/trail/consistency?first=300&second=500",
    ]
    Recorded.token = reader_api.token
    Recorded.seen = []
    Recorded.responses = {}
    for path in paths:
        response = reader_api.client.get(path, headers=reader_api.headers())
        Recorded.responses[path] = (response.status_code, response.content)
    state = tmp_path / "trail.state"
    ok(verify("checkpoint", "--vkey", trail["vkey"], "--state", state, trail["old_file"]))

    out = ok(
        verify(
            "checkpoint",
            "--vkey",
            trail["vkey"],
            "--state",
            state,
            "--url",
            base,
            "--token",
            reader_api.token,
        )
    )
    assert "size: 500" in out and "grew from 300 to 500" in out
    out = ok(
        verify(
            "inclusion",
            "--vkey",
            trail["vkey"],
            "--url",
            base,
            event.uuid,
            env={"AUDITLOG_TOKEN": reader_api.token},
        )
    )
    assert f"event: {event.uuid}" in out and "leaf_index: 400" in out
    ok(
        verify(
            "consistency",
            "--vkey",
            trail["vkey"],
            "--old",
            trail["old_file"],
            "--new",
            trail["new_file"],
            "--url",
            base,
            "--token",
            reader_api.token,
        )
    )
    assert Recorded.seen == [paths[0], paths[2], paths[0], paths[1], paths[2]]

    assert "HTTP 401" in failed(
        verify("checkpoint", "--vkey", trail["vkey"], "--url", base, "--token", "wrong"), 2
    )
    assert "--token" in failed(verify("checkpoint", "--vkey", trail["vkey"], "--url", base), 2)
    assert "GET http://127.0.0.1:9/api/v1/trail/checkpoint: " in failed(
        verify("checkpoint", "--vkey", trail["vkey"], "--url", "http://127.0.0.1:9", "--token", "t"), 2
    )
