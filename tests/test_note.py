"""C2SP signed notes and checkpoints (auditlog.trail.note). Go's golang.org/x/mod/sumdb/note checks
the same notes in tests/independent."""

import base64

import pytest

from auditlog.trail.note import Checkpoint, NoteError, Signer, Verifier, note_open

# Go's golang.org/x/mod/sumdb/note example key pair and note (its example_test.go).
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6Ryy"
    "BwJnAM=\n"
)


def test_a_note_signed_by_go_opens_with_its_verifier_key():
    verifier = Verifier.parse(GO_VKEY)

    assert note_open(GO_NOTE, [verifier]).startswith("If you think cryptography")
    assert Signer.parse(GO_SKEY).verifier().text() == GO_VKEY


def test_we_sign_what_go_signs_byte_for_byte():
    """Ed25519 is deterministic: the same key and text give Go's very signature."""
    text = GO_NOTE.partition("\n\n")[0] + "\n"

    assert Signer.parse(GO_SKEY).sign(text) == GO_NOTE


def test_sign_and_open_round_trip_and_every_change_is_refused():
    signer = Signer.generate("audit.example/log")
    text = Checkpoint("audit.example/log", 3, bytes(range(32)), ("time 1764770000",)).text()
    note = signer.sign(text)
    verifier = Verifier.parse(signer.verifier().text())

    assert note_open(note, [verifier]) == text
    with pytest.raises(NoteError, match="does not verify"):
        note_open(note.replace("\n3\n", "\n4\n"), [verifier])
    with pytest.raises(NoteError, match="no signature by a known key"):
        note_open(note, [Signer.generate("audit.example/log").verifier()])
    assert Signer.parse(signer.text()).verifier() == signer.verifier()


def test_checkpoint_parse_and_text():
    checkpoint = Checkpoint("audit.example/log", 12, b"\x07" * 32, ("time 5",))

    assert Checkpoint.parse(checkpoint.text()) == checkpoint
    root = base64.b64encode(b"\x07" * 32).decode()
    assert checkpoint.text() == f"audit.example/log\n12\n{root}\ntime 5\n"
    assert checkpoint.time == 5
    for bad in ["a\n1\n", "a\n01\n" + base64.b64encode(bytes(32)).decode() + "\n", "a\n1\nxyz\n"]:
        with pytest.raises(NoteError):
            Checkpoint.parse(bad)


@pytest.mark.parametrize("vkey", ["", "a+b+c", "name+00000000+AQ==", GO_VKEY.replace("c74f20a3", "c74f20a4")])
def test_malformed_verifier_keys_are_refused(vkey):
    with pytest.raises(NoteError):
        Verifier.parse(vkey)
