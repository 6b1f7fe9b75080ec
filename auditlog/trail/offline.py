"""The auditor's offline verifier of the trail: signed checkpoints, inclusion and consistency
proofs, export bundles, and producers' receipts, checked with nothing but the verifier key and
the files, on any machine with Python 3.11 and `cryptography` (no Django, no database, no
access to the service).

    python -m auditlog.trail.offline --help
    auditlog-verify-offline checkpoint --vkey KEY checkpoint.note

Exit status: 0 verified; 1 verification failed (one line on stderr names what failed); 2 the
verifier could not run as asked (arguments, an unreadable file or key, the network).

Everything it needs is here or in auditlog.trail.merkle, .note, .jcs and .receipt, which import
only the standard library and `cryptography`. A leaf is recomputed from an event's JSON object as the
service computes it (LEAF_V1): the RFC 8785 (JCS) bytes of the object, which carries "v": 1 and
its "leaf_index"; its hash is SHA-256(0x00 || leaf) (RFC 9162).

Export bundle (auditlog-bundle/v1): JSON Lines, UTF-8. Line 1 is a header,

    {"format": "auditlog-bundle/v1", "checkpoint": "<signed note>",
     "prefix": {"size": A, "hashes": ["<base64>", ...]}}

where prefix.hashes is the compact range of leaves [0, A) (the hashes of the perfect subtrees
[0, A) decomposes into, largest first, one per set bit of A); "prefix" may be left out when
A = 0, and other header members are ignored. Then one line per leaf, the event's leaf object
with leaf_index A, A+1, ..., N-1 in that order, N being the checkpoint's tree size.

State (--state FILE): the last checkpoint this verifier accepted. A later checkpoint must have
the same origin and either the same size and root, or more leaves and a consistency proof from
the remembered tree (--consistency-proof FILE, or fetched with --url); a smaller tree is refused.
The file is replaced atomically and readable by its owner only.
"""

import argparse
import base64
import binascii
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from auditlog.trail import jcs, merkle
from auditlog.trail.note import Checkpoint, NoteError, Verifier, note_open, retention_leaves
from auditlog.trail.receipt import receipt_open

PROG = "auditlog-verify-offline"
BUNDLE_FORMAT = "auditlog-bundle/v1"
STATE_FORMAT = "auditlog-verify-state/v1"
LEAF_VERSION = 1
TOKEN_ENV = "AUDITLOG_TOKEN"


class VerificationFailed(Exception):
    """What was checked does not verify: exit status 1."""


class UsageError(Exception):
    """The verifier cannot run as asked: exit status 2."""


# --- inputs -----------------------------------------------------------------------------------


def read_bytes(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def read_text(path: str, what: str) -> str:
    try:
        return read_bytes(path, what).decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationFailed(f"the {what} {path} is not UTF-8 text") from None


def load_verifiers(values: list[str]) -> list[Verifier]:
    """Each --vkey is a verifier key or a file of them, one per line (as GET
    /api/v1/trail/verifier-keys lists them)."""
    verifiers = []
    for value in values:
        if not os.path.isfile(value):
            try:
                verifiers.append(Verifier.parse(value))
            except NoteError as exc:
                raise UsageError(f"--vkey {value.strip()[:60]!r}: no such file, and {exc}") from None
            continue
        try:
            lines = [
                line for line in read_bytes(value, "verifier key file").decode().splitlines() if line.strip()
            ]
            verifiers.extend(Verifier.parse(line) for line in lines)
        except (UnicodeDecodeError, NoteError) as exc:
            raise UsageError(f"the verifier key file {value}: {exc}") from None
        if not lines:
            raise UsageError(f"the verifier key file {value} holds no key")
    return verifiers


def strict_json(text: str | bytes):
    """JSON as RFC 8785 reads it (I-JSON): no NaN or Infinity, no duplicate member names."""

    def no_duplicates(pairs):
        obj = {}
        for name, value in pairs:
            if name in obj:
                raise ValueError(f"duplicate member name {name!r}")
            obj[name] = value
        return obj

    def no_constants(name):
        raise ValueError(f"{name} is not a JSON number")

    return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)


def b64_hash(value, what: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except binascii.Error:
        raw = b""
    if len(raw) != merkle.HASH_SIZE:
        raise VerificationFailed(f"{what} is not a base64 {merkle.HASH_SIZE}-byte hash: {str(value)[:60]!r}")
    return raw


def b64_hashes(values, what: str) -> list[bytes]:
    if not isinstance(values, list):
        raise VerificationFailed(f"{what} is not a list of base64 hashes")
    return [b64_hash(value, f"{what}[{i}]") for i, value in enumerate(values)]


def whole(value) -> bool:
    return type(value) is int and value >= 0


def proof_object(data: bytes | str, what: str, names: tuple[str, ...]) -> dict:
    try:
        obj = strict_json(data)
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise VerificationFailed(f"{what} is not JSON: {exc}") from None
    if not isinstance(obj, dict) or any(name not in obj for name in names):
        raise VerificationFailed(f"{what} is not a JSON object with {', '.join(names)}")
    return obj


# --- checkpoints ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    checkpoint: Checkpoint
    note: str


def open_checkpoint(note: str, verifiers: list[Verifier], what: str, origin: str | None = None) -> Signed:
    try:
        checkpoint = Checkpoint.parse(note_open(note, verifiers))
    except NoteError as exc:
        raise VerificationFailed(f"{what}: {exc}") from None
    if origin is not None and checkpoint.origin != origin:
        raise VerificationFailed(f"{what}: the origin is {checkpoint.origin!r}, not {origin!r}")
    return Signed(checkpoint, note)


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def when(seconds: int | None) -> str:
    if seconds is None:
        return "(none)"
    try:
        return f"{seconds} ({datetime.fromtimestamp(seconds, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')})"
    except (OverflowError, OSError, ValueError):
        return f"{seconds} (beyond the calendar)"


def describe(checkpoint: Checkpoint) -> list[str]:
    return [
        f"origin: {checkpoint.origin}",
        f"size: {checkpoint.size}",
        f"root: {b64(checkpoint.root)}",
        f"time: {when(checkpoint.time)}",
    ]


def check_consistency(old: Checkpoint, new: Checkpoint, proof: list[bytes]) -> None:
    """VerificationFailed unless the tree of `new` extends the tree of `old` (same origin)."""
    if old.origin != new.origin:
        raise VerificationFailed(f"two logs: origin {old.origin!r} and origin {new.origin!r}")
    if new.size < old.size:
        raise VerificationFailed(
            f"the log shrank from {old.size} to {new.size} leaves: truncation or a rewrite"
        )
    if new.size == old.size:
        if new.root != old.root:
            raise VerificationFailed(
                f"the history was rewritten: two checkpoints of {new.size} leaves with different roots"
            )
        return
    if old.size == 0:
        return  # the empty tree is a prefix of every tree
    try:
        merkle.consistency_verify(old.size, new.size, old.root, new.root, proof)
    except merkle.ProofError as exc:
        raise VerificationFailed(
            f"the tree of {new.size} leaves does not extend the tree of {old.size} leaves: {exc}"
        ) from None


def consistency_hashes(data: bytes | str, what: str, first: int, second: int) -> list[bytes]:
    obj = proof_object(data, what, ("first", "second", "hashes"))
    if (obj["first"], obj["second"]) != (first, second):
        raise VerificationFailed(
            f"{what} is from {obj['first']} to {obj['second']} leaves, not from {first} to {second}"
        )
    return b64_hashes(obj["hashes"], f"{what}: hashes")


# --- the network (optional: files are the primary path) ---------------------------------------


@dataclass(frozen=True)
class Remote:
    base: str
    token: str | None
    timeout: float

    def get(self, path: str, **params) -> bytes:
        if not self.token:
            raise UsageError(f"--url needs an API key with the read scope: --token or ${TOKEN_ENV}")
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.base.rstrip('/')}{path}{query}"
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {self.token}", "User-Agent": PROG}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode("utf-8", "replace").strip()
            raise UsageError(f"GET {url}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise UsageError(f"GET {url}: {getattr(exc, 'reason', exc)}") from None


def remote_from(args) -> Remote | None:
    if not args.url:
        return None
    if urllib.parse.urlsplit(args.url).scheme not in ("http", "https"):
        raise UsageError(f"--url {args.url!r}: an http:// or https:// address")
    return Remote(args.url, args.token or os.environ.get(TOKEN_ENV), args.timeout)


# --- the state file ---------------------------------------------------------------------------


def state_read(path: str) -> Checkpoint | None:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read the state file {path}: {exc.strerror or exc}") from None
    try:
        obj = json.loads(data)
        if obj.get("format") != STATE_FORMAT:
            raise ValueError(f"not {STATE_FORMAT}")
        text, sep, _ = obj["note"].rpartition("\n\n")
        checkpoint = Checkpoint.parse(text + "\n")
        if (checkpoint.origin, checkpoint.size, b64(checkpoint.root)) != (
            obj["origin"],
            obj["size"],
            obj["root"],
        ) or not sep:
            raise ValueError("its fields do not match its note")
    except (ValueError, KeyError, TypeError, AttributeError, NoteError) as exc:
        raise UsageError(f"the state file {path} is damaged ({exc}): restore it or remove it") from None
    return checkpoint


def state_write(path: str, signed: Signed) -> None:
    """Replace the state atomically: a temporary file in the same directory (mode 0600), then
    os.replace, so a crash leaves the old state or the new one."""
    checkpoint = signed.checkpoint
    obj = {
        "format": STATE_FORMAT,
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "root": b64(checkpoint.root),
        "time": checkpoint.time,
        "note": signed.note,
    }
    target = Path(path)
    try:
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"cannot write the state file {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(obj, file, indent=1)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, target)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise UsageError(f"cannot write the state file {path}: {exc.strerror or exc}") from None


def state_advance(args, signed: Signed, known: dict[tuple[int, int], list[bytes]] | None = None) -> str:
    """Accept `signed` against the state file, if any, and remember it. `known`: consistency
    proofs the command was given, by (first, second), to use before asking for one."""
    if not args.state:
        return ""
    new = signed.checkpoint
    old = state_read(args.state)
    if old is None:
        state_write(args.state, signed)
        return f"state: {args.state} created with this checkpoint ({new.size} leaves): trusted on first use"
    if old.origin != new.origin:
        raise VerificationFailed(f"the checkpoint's origin {new.origin!r} is not the state's {old.origin!r}")
    proof: list[bytes] = []
    if old.size < new.size and old.size > 0:
        proof = consistency_for(args, old.size, new.size, known or {})
    check_consistency(old, new, proof)
    if new.size == old.size and (new.time or 0) <= (old.time or 0):
        return f"state: same tree as {args.state} ({new.size} leaves)"
    state_write(args.state, signed)
    if new.size == old.size:
        return f"state: same tree as {args.state} ({new.size} leaves), newer checkpoint remembered"
    return f"state: the log grew from {old.size} to {new.size} leaves consistently; {args.state} updated"


def consistency_for(args, first: int, second: int, known: dict[tuple[int, int], list[bytes]]) -> list[bytes]:
    if (first, second) in known:
        return known[(first, second)]
    if args.consistency_proof:
        what = f"the consistency proof {args.consistency_proof}"
        return consistency_hashes(
            read_bytes(args.consistency_proof, "consistency proof"), what, first, second
        )
    remote = remote_from(args)
    if remote is None:
        raise UsageError(
            f"the log grew from {first} to {second} leaves since {args.state}: give a consistency"
            " proof (--consistency-proof FILE, or --url and --token to fetch it)"
        )
    data = remote.get("/api/v1/trail/consistency", first=first, second=second)
    return consistency_hashes(data, "the fetched consistency proof", first, second)


# --- leaves -----------------------------------------------------------------------------------


def leaf_from_object(obj, leaf_index: int, what: str) -> bytes:
    """The leaf bytes of an event's leaf object that should be leaf `leaf_index`."""
    if not isinstance(obj, dict):
        raise VerificationFailed(f"{what} is not a JSON object")
    if obj.get("v") != LEAF_VERSION or type(obj.get("v")) is not int:
        raise VerificationFailed(f'{what} is not a version {LEAF_VERSION} leaf ("v": {obj.get("v")!r})')
    if not whole(obj.get("leaf_index")):
        raise VerificationFailed(f"{what} has no whole-number leaf_index")
    if obj["leaf_index"] != leaf_index:
        raise VerificationFailed(f"{what} has leaf_index {obj['leaf_index']}, expected {leaf_index}")
    try:
        return jcs.canonical(obj)
    except (ValueError, TypeError) as exc:
        raise VerificationFailed(f"{what} has no RFC 8785 form: {exc}") from None


# --- commands ---------------------------------------------------------------------------------


def checkpoint_source(args, remote: Remote | None, path: str | None, what: str) -> Signed:
    verifiers = load_verifiers(args.vkey)
    if path:
        return open_checkpoint(read_text(path, what), verifiers, f"the {what} {path}", args.origin)
    if remote is None:
        raise UsageError(f"give the {what} as a file, or --url to fetch the latest")
    data = remote.get("/api/v1/trail/checkpoint")
    try:
        note = data.decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationFailed("the fetched checkpoint is not UTF-8 text") from None
    return open_checkpoint(note, verifiers, "the fetched checkpoint", args.origin)


def cmd_checkpoint(args) -> list[str]:
    signed = checkpoint_source(args, remote_from(args), args.note, "checkpoint")
    return ["checkpoint: signature OK", *describe(signed.checkpoint), state_advance(args, signed)]


def cmd_inclusion(args) -> list[str]:
    remote = remote_from(args)
    signed = checkpoint_source(args, remote, args.checkpoint, "checkpoint")
    checkpoint = signed.checkpoint
    if remote is not None and is_uuid(args.proof):
        if checkpoint.size == 0:
            raise VerificationFailed("the checkpoint's tree is empty: it includes no event")
        data = remote.get(f"/api/v1/events/{args.proof}/proof", tree_size=checkpoint.size)
        what = f"the fetched proof of event {args.proof}"
    else:
        data = read_bytes(args.proof, "proof")
        what = f"the proof {args.proof}"
    obj = proof_object(data, what, ("leaf_index", "tree_size", "leaf", "hashes"))
    if not whole(obj["leaf_index"]) or not whole(obj["tree_size"]):
        raise VerificationFailed(f"{what}: leaf_index and tree_size are whole numbers")
    if obj["tree_size"] != checkpoint.size:
        raise VerificationFailed(
            f"{what} is for a tree of {obj['tree_size']} leaves, the checkpoint's has {checkpoint.size}"
        )
    try:
        leaf = base64.b64decode(obj["leaf"], validate=True) if isinstance(obj["leaf"], str) else None
        leaf_obj = strict_json(leaf) if leaf is not None else None
    except (binascii.Error, ValueError) as exc:
        raise VerificationFailed(f"{what}: the leaf is not base64 of a JSON object ({exc})") from None
    if leaf is None or leaf_from_object(leaf_obj, obj["leaf_index"], f"{what}: the leaf") != leaf:
        raise VerificationFailed(f"{what}: the leaf is not its event's object in RFC 8785 form")
    hashes = b64_hashes(obj["hashes"], f"{what}: hashes")
    try:
        merkle.inclusion_verify(
            merkle.leaf_hash(leaf), obj["leaf_index"], checkpoint.size, hashes, checkpoint.root
        )
    except merkle.ProofError as exc:
        raise VerificationFailed(
            f"event {leaf_obj.get('id')} is not leaf {obj['leaf_index']} of the checkpoint's tree: {exc}"
        ) from None
    return [
        f"inclusion: OK, event {leaf_obj.get('id')} is leaf {obj['leaf_index']} of the signed tree",
        f"event: {leaf_obj.get('id')}",
        f"leaf_index: {obj['leaf_index']}",
        *describe(checkpoint),
        state_advance(args, signed),
    ]


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def cmd_consistency(args) -> list[str]:
    old = checkpoint_source(args, None, args.old, "old checkpoint")
    new = checkpoint_source(args, None, args.new, "new checkpoint")
    first, second = old.checkpoint.size, new.checkpoint.size
    hashes: list[bytes] = []
    if 0 < first < second:
        if args.proof:
            what = f"the consistency proof {args.proof}"
            hashes = consistency_hashes(read_bytes(args.proof, "consistency proof"), what, first, second)
        elif (remote := remote_from(args)) is not None:
            data = remote.get("/api/v1/trail/consistency", first=first, second=second)
            hashes = consistency_hashes(data, "the fetched consistency proof", first, second)
        else:
            raise UsageError("give the consistency proof as a file, or --url to fetch it")
    check_consistency(old.checkpoint, new.checkpoint, hashes)
    # The old checkpoint may be older than the state's: only a tree of the same size compares.
    remembered = state_read(args.state) if args.state else None
    if remembered is not None and remembered.size == first and remembered.root != old.checkpoint.root:
        raise VerificationFailed(
            f"the history was rewritten: the old checkpoint and {args.state} have {first} leaves"
            " and different roots"
        )
    return [
        f"consistency: OK, the tree of {second} leaves extends the tree of {first} leaves",
        f"origin: {new.checkpoint.origin}",
        f"old: {first} leaves, root {b64(old.checkpoint.root)}, time {when(old.checkpoint.time)}",
        f"new: {second} leaves, root {b64(new.checkpoint.root)}, time {when(new.checkpoint.time)}",
        state_advance(args, new, {(first, second): hashes}),
    ]


def bundle_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(line number, line without its newline) of a JSON Lines file, read as a stream."""
    try:
        with open(path, "rb") as file:
            for number, line in enumerate(file, 1):
                yield number, line.removesuffix(b"\n").removesuffix(b"\r")
    except OSError as exc:
        raise UsageError(f"cannot read the bundle {path}: {exc.strerror or exc}") from None


def _retention_check(records, start: int, verifiers) -> int | None:
    """The bundle's retention records must be signed and name leaves 0 to start - 1, in order:
    the events of the prefix went by policy, not by someone deleting them."""
    if records is None:  # a bundle without the member (hand-made, or filtered): said in the output
        return None
    if not isinstance(records, list) or not all(isinstance(record, str) for record in records):
        raise VerificationFailed('line 1: "retention" is not a list of signed notes')
    covered = 0
    for number, record in enumerate(records, start=1):
        try:
            first, last = retention_leaves(note_open(record, verifiers))
        except NoteError as exc:
            raise VerificationFailed(f"line 1: retention record {number} does not verify: {exc}") from None
        if first != covered:
            raise VerificationFailed(
                f"line 1: retention record {number} names leaves {first}-{last}, where leaf {covered} was due"
            )
        covered = last + 1
    if covered != start:
        raise VerificationFailed(
            f"line 1: the prefix has {start} leaves, but signed retention records cover {covered}: the events"
            f" of leaves {covered} to {start - 1} were removed without a record"
            if covered < start
            else f"line 1: retention records cover {covered} leaves, the prefix only {start}"
        )
    return len(records)


def cmd_bundle(args) -> list[str]:
    verifiers = load_verifiers(args.vkey)
    lines = bundle_lines(args.bundle)
    number, first = next(lines, (1, b""))
    header = proof_object(first, f"line 1 of {args.bundle} (the header)", ("format", "checkpoint"))
    if header["format"] != BUNDLE_FORMAT:
        raise VerificationFailed(f"line 1: the format is {header['format']!r}, not {BUNDLE_FORMAT!r}")
    if not isinstance(header["checkpoint"], str):
        raise VerificationFailed("line 1: the checkpoint is not a signed note's text")
    signed = open_checkpoint(header["checkpoint"], verifiers, "the bundle's checkpoint", args.origin)
    checkpoint = signed.checkpoint
    prefix = header.get("prefix", {"size": 0, "hashes": []})
    if not isinstance(prefix, dict) or not whole(prefix.get("size")) or "hashes" not in prefix:
        raise VerificationFailed('line 1: "prefix" is not {"size": <leaves>, "hashes": [...]}')
    start = prefix["size"]
    prefix_hashes = b64_hashes(prefix["hashes"], "line 1: prefix.hashes")
    if start > checkpoint.size:
        raise VerificationFailed(f"line 1: the prefix has {start} leaves, the checkpoint {checkpoint.size}")
    if len(prefix_hashes) != start.bit_count():
        raise VerificationFailed(
            f"line 1: a prefix of {start} leaves has {start.bit_count()} hashes (one per set bit of the"
            f" size), not {len(prefix_hashes)}"
        )
    purges = _retention_check(header.get("retention"), start, verifiers)
    compact = list(prefix_hashes)
    size = start
    first_id = last_id = None
    for number, raw in lines:
        what = f"line {number}"
        if size == checkpoint.size:
            raise VerificationFailed(
                f"{what}: one line too many, the checkpoint's {checkpoint.size} leaves end on"
                f" line {number - 1}"
            )
        try:
            obj = strict_json(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise VerificationFailed(f"{what} is not UTF-8") from None
        except ValueError as exc:
            raise VerificationFailed(f"{what} is not JSON: {exc}") from None
        if isinstance(obj, dict) and whole(obj.get("leaf_index")) and obj["leaf_index"] != size:
            index = obj["leaf_index"]
            if index < size:
                problem = (
                    "a duplicate or out of order" if index >= start else "before the bundle's first leaf"
                )
                raise VerificationFailed(f"{what}: leaf_index {index} after {size - 1}: {problem}")
            missing = f"leaf {size} is" if index == size + 1 else f"leaves {size} to {index - 1} are"
            raise VerificationFailed(f"{what}: leaf_index {index} where {size} was due: {missing} missing")
        leaf = leaf_from_object(obj, size, what)
        merkle.compact_append(compact, size, merkle.leaf_hash(leaf))
        size += 1
        last_id = obj.get("id")
        first_id = first_id or last_id
    if size < checkpoint.size:
        raise VerificationFailed(
            f"the bundle ends at leaf {size - 1} after line {number}: leaves {size} to"
            f" {checkpoint.size - 1} of the checkpoint's {checkpoint.size} are missing"
        )
    if merkle.compact_range_root(compact, size) != checkpoint.root:
        raise VerificationFailed(
            f"the events do not reproduce the checkpoint's root: the bundle's {size - start} events"
            f" (leaves {start} to {size - 1}) or its prefix hashes differ from what was signed"
        )
    events = size - start
    return [
        f"bundle: OK, {events} events reproduce the signed root of {size} leaves",
        *describe(checkpoint),
        f"events: leaves {start} to {size - 1}" + (f", {first_id} to {last_id}" if events else " (none)"),
        f"prefix: leaves 0 to {start - 1} are attested by {len(prefix_hashes)} hashes, not by events; "
        + (
            f"{purges} signed retention record(s) say a purge removed them"
            if purges is not None
            else "the bundle carries no retention records saying why"
        )
        if start
        else "prefix: none, every leaf is in the bundle",
        state_advance(args, signed),
    ]


def cmd_receipt(args) -> list[str]:
    text = read_text(args.receipt, "receipt")
    if text.lstrip().startswith("{"):  # the API's whole answer, saved as it came
        try:
            text = json.loads(text)["receipt"]
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{args.receipt} is JSON without a receipt string") from None
    try:
        receipt = receipt_open(text, load_verifiers(args.vkey))
    except NoteError as exc:
        raise VerificationFailed(f"the receipt {args.receipt}: {exc}") from None
    if args.origin and receipt.origin != args.origin:
        raise VerificationFailed(f"the receipt is of {receipt.origin}, not {args.origin}")
    lines = ["receipt: signature OK", f"origin: {receipt.origin}", f"source: {receipt.source}"]
    if args.event:
        found = [event for event in receipt.events if event[0] == args.event]
        if not found:
            raise VerificationFailed(f"the receipt does not name the event {args.event}")
        return [*lines, *(f"event: {' '.join(event)}" for event in found)]
    return [*lines, *(f"event: {' '.join(event)}" for event in receipt.events)]


# --- the command line -------------------------------------------------------------------------

DESCRIPTION = """\
Verify the audit trail offline: signed checkpoints (C2SP signed notes, Ed25519), RFC 9162
inclusion and consistency proofs, and export bundles, with only the verifier key and files.
Get the verifier key out of band (GET /api/v1/trail/verifier-keys serves it, but a key from the
server you are checking proves little). Exit status: 0 verified, 1 verification failed (one
line on stderr says what), 2 usage error (arguments, unreadable files or keys, the network)."""

EPILOG = """\
examples:
  %(prog)s checkpoint --vkey log.vkey --state trail.state checkpoint.note
  %(prog)s inclusion --vkey log.vkey --checkpoint checkpoint.note proof.json
  %(prog)s consistency --vkey log.vkey --old old.note --new new.note consistency.json
  %(prog)s bundle --vkey log.vkey --state trail.state export.jsonl
  %(prog)s receipt --vkey receipts.vkey --event EVENT_ID answer.json
  AUDITLOG_TOKEN=... %(prog)s inclusion --vkey log.vkey --url https://audit.example EVENT_ID"""

BUNDLE_HELP = f"""\
Verify an export bundle: recompute every event's leaf, then the tree's root from the prefix
hashes and the leaves, and compare it with the root the bundle's checkpoint signs.

Bundle format ({BUNDLE_FORMAT}): JSON Lines, UTF-8. Line 1 is the header
  {{"format": "{BUNDLE_FORMAT}", "checkpoint": "<signed note text>",
   "prefix": {{"size": A, "hashes": ["<base64>", ...]}}}}
where prefix.hashes is the compact range of leaves [0, A): the hashes of the perfect subtrees
[0, A) decomposes into, largest first, one per set bit of A (A = 0: [], or no "prefix"). Each
following line is one event's leaf object ("v": 1, "leaf_index", the event's fields) with
leaf_index A, A+1, ..., N-1 in order, N being the checkpoint's tree size. A leaf is the RFC 8785
form of its object."""


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    keys = common.add_argument_group("keys")
    keys.add_argument(
        "--vkey",
        action="append",
        required=True,
        metavar="KEY_OR_FILE",
        help="a verifier key (name+id+base64) or a file of them, one per line; repeat for several",
    )
    keys.add_argument("--origin", help="refuse checkpoints of another origin (log name)")
    state = common.add_argument_group("state (remembering the last checkpoint accepted)")
    state.add_argument(
        "--state",
        metavar="FILE",
        help="accept the checkpoint only if it extends the one FILE remembers (created on first use),"
        " then remember it",
    )
    state.add_argument(
        "--consistency-proof",
        metavar="FILE",
        help="with --state: the consistency proof JSON from the remembered tree size to the new one",
    )
    network = common.add_argument_group("network (optional: fetch what is not given as a file)")
    network.add_argument(
        "--url", metavar="BASE", help="the service's base address, e.g. https://audit.example"
    )
    network.add_argument("--token", help=f"an API key with the read scope (default: ${TOKEN_ENV})")
    network.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="per request (default: 30)"
    )

    top = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            parents=[common],
            help=summary,
            description=description or summary,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    sub = command("checkpoint", "verify a signed checkpoint; print its origin, size, root and time")
    sub.add_argument(
        "note", nargs="?", metavar="NOTE_FILE", help="the signed note (default with --url: fetch it)"
    )
    sub.set_defaults(run=cmd_checkpoint)

    sub = command(
        "inclusion",
        "verify that an event is a leaf of a signed tree",
        "Verify an inclusion proof (GET /api/v1/events/<id>/proof?tree_size=N) against a signed\n"
        "checkpoint of N leaves; print the event's id and leaf index.",
    )
    sub.add_argument(
        "--checkpoint",
        metavar="NOTE_FILE",
        help="the signed checkpoint (default with --url: fetch the latest)",
    )
    sub.add_argument(
        "proof",
        metavar="PROOF_JSON",
        help="the proof file; with --url, an event id (UUID) fetches its proof for the checkpoint's size",
    )
    sub.set_defaults(run=cmd_inclusion)

    sub = command(
        "consistency",
        "verify that a newer signed tree extends an older one",
        "Verify a consistency proof (GET /api/v1/trail/consistency?first=M&second=N) between two\n"
        "signed checkpoints of M and N leaves.",
    )
    sub.add_argument("--old", required=True, metavar="NOTE_FILE", help="the older signed checkpoint")
    sub.add_argument("--new", required=True, metavar="NOTE_FILE", help="the newer signed checkpoint")
    sub.add_argument(
        "proof", nargs="?", metavar="PROOF_JSON", help="the proof file (default with --url: fetch it)"
    )
    sub.set_defaults(run=cmd_consistency)

    sub = command(
        "receipt",
        "verify a receipt the service signed for a producer; print the events it names",
        'Verify a receipt (POST with `Prefer: receipt`: the answer\'s "receipt") against the\n'
        "receipt verifier key (GET /api/v1/trail/receipt-keys, or the operator); print its origin,\n"
        "source and each event as `id received_at payload_hash`.",
    )
    sub.add_argument("receipt", metavar="RECEIPT_FILE", help="the receipt's note, or the whole JSON answer")
    sub.add_argument("--event", metavar="ID", help="fail unless the receipt names this event id")
    sub.set_defaults(run=cmd_receipt)

    sub = command("bundle", "verify an export bundle against the checkpoint it carries", BUNDLE_HELP)
    sub.add_argument("bundle", metavar="BUNDLE_FILE", help=f"the {BUNDLE_FORMAT} file")
    sub.set_defaults(run=cmd_bundle)
    return top


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 0
    try:
        lines = args.run(args)
    except VerificationFailed as exc:
        print(f"{PROG}: FAILED: {exc}", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(line for line in lines if line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
