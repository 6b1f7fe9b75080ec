"""Signed receipts (issue 13, item 9): a producer that sends `Prefer: receipt` gets a C2SP signed
note of what the service acknowledged, verifiable offline with the receipt verifier key."""

import json

import pytest
from django.core.checks import run_checks

from auditlog.models import ActionLog
from auditlog.trail.note import NoteError, Signer
from auditlog.trail.receipt import receipt_open
from tests.conftest import BATCH_URL, EVENTS_URL, make_event
from tests.test_offline_verifier import verify, write

pytestmark = pytest.mark.django_db

ORIGIN = "receipts.audit.example"
PREFER = {"Prefer": "receipt"}


@pytest.fixture
def receipt_key(settings):
    signer = Signer.generate(ORIGIN)
    settings.AUDITLOG_RECEIPT_KEY = signer.text()
    return signer


def opened(signer: Signer, answer) -> tuple:
    receipt = receipt_open(answer.json()["receipt"], [signer.verifier()])
    assert receipt.origin == ORIGIN
    return receipt


def stored(event_id: str) -> tuple[str, str]:
    event = ActionLog.objects.get(uuid=event_id)
    return event.source.prefix, event.payload_hash


def test_a_receipt_names_the_event_its_time_and_payload_hash(api, receipt_key):
    answer = api.post(EVENTS_URL, make_event(idempotency_key="r-1"), headers=PREFER)

    assert answer.status_code == 201
    assert answer["Preference-Applied"] == "receipt"
    body = answer.json()
    receipt = opened(receipt_key, answer)
    prefix, payload_hash = stored(body["id"])
    assert receipt.source == prefix
    assert receipt.events == ((body["id"], body["received_at"], payload_hash),)


def test_a_replay_gets_a_receipt_of_the_original(api, receipt_key):
    first = api.post(EVENTS_URL, make_event(idempotency_key="r-2"), headers=PREFER).json()
    again = api.post(EVENTS_URL, make_event(idempotency_key="r-2"), headers=PREFER)

    assert again.status_code == 200
    assert opened(receipt_key, again).events[0][:2] == (first["id"], first["received_at"])


def test_only_a_producer_that_asks_gets_one_and_only_where_there_is_a_key(api, settings):
    settings.AUDITLOG_RECEIPT_KEY = ""
    unkeyed = api.post(EVENTS_URL, make_event(), headers=PREFER)
    settings.AUDITLOG_RECEIPT_KEY = Signer.generate(ORIGIN).text()
    unasked = api.post(EVENTS_URL, make_event())
    other = api.post(EVENTS_URL, make_event(), headers={"Prefer": "receipts, return=minimal"})
    asked = api.post(EVENTS_URL, make_event(), headers={"Prefer": "respond-async, Receipt; strength=1"})

    for answer in (unkeyed, unasked, other):
        assert answer.status_code == 201
        assert "receipt" not in answer.json() and "Preference-Applied" not in answer
    assert "receipt" in asked.json()


def test_a_batch_receipt_names_every_event_acknowledged_in_order(api, receipt_key):
    api.post(EVENTS_URL, make_event(idempotency_key="b-old"))
    events = [
        make_event(idempotency_key="b-1"),
        make_event(action=""),  # invalid: not acknowledged
        make_event(idempotency_key="b-old"),  # replayed
        make_event(idempotency_key="b-old", outcome="failure"),  # conflict: not acknowledged
        make_event(),
    ]

    answer = api.post(BATCH_URL, {"events": events}, headers=PREFER)

    results = answer.json()["results"]
    assert [result["status"] for result in results] == [201, 400, 200, 409, 201]
    acknowledged = [result for result in results if result["status"] in (200, 201)]
    assert opened(receipt_key, answer).events == tuple(
        (result["id"], result["received_at"], stored(result["id"])[1]) for result in acknowledged
    )


def test_a_batch_with_nothing_acknowledged_has_no_receipt(api, receipt_key):
    answer = api.post(BATCH_URL, {"events": [make_event(action="")]}, headers=PREFER)

    assert answer.status_code == 200 and "receipt" not in answer.json()


def test_an_altered_or_foreign_receipt_does_not_verify(api, receipt_key):
    note = api.post(EVENTS_URL, make_event(), headers=PREFER).json()["receipt"]
    altered = note.replace("event ", "event 0", 1)

    with pytest.raises(NoteError, match="does not verify"):
        receipt_open(altered, [receipt_key.verifier()])
    with pytest.raises(NoteError, match="no signature by a known key"):
        receipt_open(note, [Signer.generate(ORIGIN).verifier()])
    with pytest.raises(NoteError, match="not a receipt"):
        receipt_open(receipt_key.sign("a checkpoint, say\n"), [receipt_key.verifier()])


def test_the_offline_verifier_checks_a_saved_answer_without_django(api, receipt_key, tmp_path):
    answer = api.post(EVENTS_URL, make_event(), headers=PREFER)
    event_id = answer.json()["id"]
    saved = write(tmp_path / "answer.json", answer.content.decode())
    vkey = write(tmp_path / "receipts.vkey", receipt_key.verifier().text() + "\n")

    ok = verify("receipt", "--vkey", vkey, "--event", event_id, saved)
    absent = verify("receipt", "--vkey", vkey, "--event", "01935f6e-7c3a-7000-8000-000000000001", saved)
    foreign = verify("receipt", "--vkey", Signer.generate(ORIGIN).verifier().text(), saved)
    note = write(tmp_path / "receipt.note", json.loads(answer.content)["receipt"])
    plain = verify("receipt", "--vkey", vkey, note)

    assert ok.returncode == 0, ok.stderr
    assert "receipt: signature OK" in ok.stdout and f"event: {event_id} " in ok.stdout
    assert absent.returncode == 1 and "does not name the event" in absent.stderr
    assert foreign.returncode == 1 and "no signature by a known key" in foreign.stderr
    assert plain.returncode == 0 and f"source: {stored(event_id)[0]}" in plain.stdout


def test_the_receipt_keys_are_published_without_a_key(client, settings):
    settings.AUDITLOG_RECEIPT_KEY = ""
    settings.AUDITLOG_RECEIPT_VERIFIER_KEYS = []
    assert client.get("/api/v1/trail/receipt-keys").status_code == 404

    current, earlier = Signer.generate(ORIGIN), Signer.generate(ORIGIN)
    settings.AUDITLOG_RECEIPT_KEY = current.text()
    settings.AUDITLOG_RECEIPT_VERIFIER_KEYS = [earlier.verifier().text()]
    answer = client.get("/api/v1/trail/receipt-keys")

    assert answer.status_code == 200
    assert answer.content.decode().splitlines() == [current.verifier().text(), earlier.verifier().text()]


def test_an_unusable_receipt_key_is_an_error_at_startup(settings, tmp_path):
    settings.AUDITLOG_RECEIPT_KEY = "PRIVATE+KEY+not+a+key"
    assert "auditlog.E009" in {problem.id for problem in run_checks()}
    settings.AUDITLOG_RECEIPT_KEY = ""
    settings.AUDITLOG_RECEIPT_KEY_FILE = str(tmp_path / "missing.key")
    assert "auditlog.E009" in {problem.id for problem in run_checks()}
    (tmp_path / "missing.key").write_text(Signer.generate(ORIGIN).text() + "\n")
    assert "auditlog.E009" not in {problem.id for problem in run_checks()}
