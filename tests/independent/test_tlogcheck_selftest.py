"""The independent checker (tlogcheck.py, tlogcheck/main.go) tested on its own, before our
service publishes anything: Go's x/mod tlog against the RFC 6962/9162 test vectors, and
notes, checkpoints and proofs that Go itself produced, verified and tampered with."""

import base64
import hashlib
import json

import pytest

from tests.independent import tlogcheck

ORIGIN = "example.test/auditlog"


@pytest.fixture(scope="module")
def binary():
    return tlogcheck.require()


def test_selftest_against_rfc_vectors(binary):
    result = tlogcheck.run("selftest")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK "), result.stdout


def sign(tmp_path, name, body, skey=None):
    (tmp_path / "body").write_text(body)
    args = ["sign", "-name", name, "-body", tmp_path / "body"] + (["-skey", skey] if skey else [])
    result = tlogcheck.run(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_go_signed_note_verifies_and_tampering_fails(binary, tmp_path):
    root = base64.b64encode(hashlib.sha256(b"").digest()).decode()
    body = f"{ORIGIN}\n0\n{root}\n"
    signed = sign(tmp_path, ORIGIN, body)
    assert signed["vkey"].startswith(ORIGIN + "+")
    assert signed["note"].startswith(body + "\n\u2014 " + ORIGIN + " ")
    note = tmp_path / "checkpoint"
    note.write_text(signed["note"])

    result = tlogcheck.run("note", "-vkey", signed["vkey"], "-note", note)
    assert result.returncode == 0, result.stderr
    assert result.stdout == body

    note.write_text(signed["note"].replace("\n0\n", "\n1\n", 1))
    result = tlogcheck.run("note", "-vkey", signed["vkey"], "-note", note)
    assert result.returncode == 1
    assert "invalid signature" in result.stderr

    other = sign(tmp_path, ORIGIN, body)  # a fresh key with the same name
    note.write_text(signed["note"])
    result = tlogcheck.run("note", "-vkey", other["vkey"], "-note", note)
    assert result.returncode == 1
    assert "no verifiable signatures" in result.stderr


@pytest.fixture
def fixture(binary, tmp_path):
    """A 13-leaf tree computed by tlog: checkpoints at 6 and 13, leaf 9's inclusion proof, and
    the consistency proof 6 -> 13, as our service should publish them."""
    args = ["-dir", tmp_path, "-origin", ORIGIN, "-size", 13, "-old", 6, "-index", 9]
    result = tlogcheck.run("fixture", *args)
    assert result.returncode == 0, result.stderr
    return tmp_path, result.stdout.strip()


def check_inclusion(d, vkey, checkpoint="new.note"):
    return tlogcheck.run(
        "inclusion", "-vkey", vkey, "-checkpoint", d / checkpoint, "-proof", d / "inclusion.json"
    )


def check_consistency(d, vkey, old="old.note", new="new.note"):
    return tlogcheck.run(
        "consistency", "-vkey", vkey, "-old", d / old, "-new", d / new, "-proof", d / "consistency.json"
    )


def test_fixture_proofs_verify(fixture):
    d, vkey = fixture
    assert (d / "vkey.txt").read_text().strip() == vkey
    for result in (check_inclusion(d, vkey), check_consistency(d, vkey)):
        assert (result.returncode, result.stdout) == (0, "OK\n"), result.stderr
    proof = json.loads((d / "inclusion.json").read_text())
    assert (proof["leaf_index"], proof["tree_size"], len(proof["hashes"])) == (9, 13, 4)
    assert base64.b64decode(proof["leaf"]) == b"leaf 9"


def edit_json(path, **changes):
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value(data[key]) if callable(value) else value
    path.write_text(json.dumps(data))


def flip(hashes, i=0):
    raw = bytearray(base64.b64decode(hashes[i]))
    raw[0] ^= 1
    return hashes[:i] + [base64.b64encode(bytes(raw)).decode()] + hashes[i + 1 :]


INCLUSION_TAMPERING = {
    "hash flipped": ({"hashes": flip}, "proof does not verify"),
    "last hash flipped": ({"hashes": lambda h: flip(h, -1)}, "proof does not verify"),
    "hashes top-down": ({"hashes": lambda h: h[::-1]}, "proof does not verify"),
    "hash dropped": ({"hashes": lambda h: h[:-1]}, "proof does not verify"),
    "other leaf": ({"leaf": base64.b64encode(b"leaf 8").decode()}, "proof does not verify"),
    "other index": ({"leaf_index": 8}, "proof does not verify"),
    "index beyond size": ({"leaf_index": 13}, "not below tree_size"),
    "size not the checkpoint's": ({"tree_size": 12}, "not the checkpoint's size"),
    "unknown key": ({"extra": 1}, "unknown field"),
    "missing key": ({"leaf": None}, "missing or null"),
    "hash not canonical base64": ({"hashes": lambda h: [h[0].rstrip("=")] + h[1:]}, "base64"),
    "short hash": ({"hashes": lambda h: [base64.b64encode(b"x" * 31).decode()] + h[1:]}, "31 bytes"),
}


@pytest.mark.parametrize("case", INCLUSION_TAMPERING)
def test_tampered_inclusion_proof_fails(fixture, case):
    d, vkey = fixture
    changes, message = INCLUSION_TAMPERING[case]
    edit_json(d / "inclusion.json", **changes)
    result = check_inclusion(d, vkey)
    assert result.returncode == 1, result.stdout
    assert message in result.stderr


CONSISTENCY_TAMPERING = {
    "hash flipped": ({"hashes": flip}, "proof does not verify"),
    "hashes top-down": ({"hashes": lambda h: h[::-1]}, "proof does not verify"),
    "hash dropped": ({"hashes": lambda h: h[:-1]}, "proof does not verify"),
    "empty proof": ({"hashes": []}, "proof does not verify"),
    "first not the checkpoint's": ({"first": 5}, "not the checkpoints' sizes"),
    "null hashes": ({"hashes": lambda _: None}, "missing or null"),
}


@pytest.mark.parametrize("case", CONSISTENCY_TAMPERING)
def test_tampered_consistency_proof_fails(fixture, case):
    d, vkey = fixture
    changes, message = CONSISTENCY_TAMPERING[case]
    edit_json(d / "consistency.json", **changes)
    result = check_consistency(d, vkey)
    assert result.returncode == 1, result.stdout
    assert message in result.stderr


def test_checkpoints_swapped_or_signed_by_another_key_fail(fixture, tmp_path):
    d, vkey = fixture
    result = check_consistency(d, vkey, old="new.note", new="old.note")
    assert result.returncode == 1
    assert "not the checkpoints' sizes" in result.stderr

    other = sign(tmp_path, ORIGIN, "irrelevant\n")["vkey"]
    for result in (check_inclusion(d, other), check_consistency(d, other)):
        assert result.returncode == 1
        assert "no verifiable signatures" in result.stderr


def test_checkpoint_origin_must_be_the_key_name(fixture, tmp_path):
    d, _ = fixture
    vkey = (d / "vkey.txt").read_text().strip()
    body = tlogcheck.run("note", "-vkey", vkey, "-note", d / "new.note").stdout
    signed = sign(tmp_path, "example.test/other", body)
    (d / "renamed.note").write_text(signed["note"])
    result = check_inclusion(d, signed["vkey"], checkpoint="renamed.note")
    assert result.returncode == 1
    assert "is not the key name" in result.stderr


def test_usage_error_exits_2(binary):
    result = tlogcheck.run("inclusion", "-vkey", "x")
    assert result.returncode == 2
    assert "missing -checkpoint" in result.stderr
