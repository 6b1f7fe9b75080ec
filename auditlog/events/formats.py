"""The stored formats: how the hashes the database keeps are computed from an event.

A stored hash is only worth keeping while it can be computed again, so these definitions are
part of the data, not of the code:

- PAYLOAD_HASH_V1 (ActionLog.payload_hash): a replayed idempotency key gets the original event
  back only if the new body hashes the same; a changed format would answer every replay of an
  older event with a 409.
- LEAF_V1 (the trail's Merkle tree, TrailLeaf.leaf_hash): the bytes of an event's leaf, which
  anyone can recompute from an export (docs/trail-format.md); a changed format would call
  every sealed event modified. (The hash chain before the tree had its own formats, kept frozen
  in auditlog.trail.legacy_chain for migration 0009.)

A version is frozen once it has been released: tests/test_formats.py pins each one to golden
values computed from fixed events. To change a format, add the next version beside the old
one and keep the old one for what was stored with it. payload_hash records no version (64 hex
digits): its first new version needs a version column beside it first, so that replays pick the
version each row was stored with. A leaf records its own ("v" in its JSON).

Each field list names its fields on purpose (sealing once took the insert's columns): a new
event column changes no format until someone decides where it goes, and the tests make that
decision unavoidable (NOT_IN_PAYLOAD_HASH, NOT_IN_LEAF).
"""

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from operator import itemgetter
from typing import Any
from uuid import UUID

from auditlog.trail import jcs

# Compact and sorted: RFC 8785's text for JSON holding no float and no name or string at U+E000
# or above (auditlog.trail.jcs), in one call into C.
# (check_circular off: the values come from parsing JSON and cannot hold themselves.)
_ENCODE_SORTED = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), check_circular=False
).encode

# Metadata as canonical JSON: sorted keys, compact, non-ASCII as is. Hashed by PAYLOAD_HASH_V1,
# and the text SQLite stores. allow_nan=False: a number JSON can carry but no database can
# store (1e400 parses as inf) raises ValueError instead. Encoders are built once: json.dumps
# builds one per call when given options.
metadata_canonical: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True)
class PayloadHash:
    """SHA-256 (hex) of the UTF-8 text: the values of `fields`, in that order, as one compact
    JSON array (non-ASCII as is; a datetime in ISO 8601 as given, which is always UTC; None as
    null), immediately followed by the metadata's canonical JSON (metadata_canonical)."""

    version: int
    fields: tuple[str, ...]

    @cached_property
    def ordered(self) -> Callable[[Mapping[str, Any]], tuple]:
        """The values of `fields`, in that order, from the event's fields by name."""
        return itemgetter(*self.fields)

    def text(self, values: Sequence, metadata_json: str) -> str:
        """`values`: the values of `fields`, in that order (a sequence, as validation holds
        them: building a mapping would cost every event a microsecond)."""
        texts = [value.isoformat() if isinstance(value, datetime) else value for value in values]
        return _compact(texts) + metadata_json

    def digest(self, values: Sequence, metadata_json: str) -> str:
        return hashlib.sha256(self.text(values, metadata_json).encode("utf-8")).hexdigest()


PAYLOAD_HASH_V1 = PayloadHash(
    version=1,
    fields=(
        "action",
        "actor_id",
        "actor_type",
        "actor_name",
        "target_type",
        "target_id",
        "target_name",
        "occurred_at",  # as the client sent it: None when it sent none
        "outcome",
        "ip_address",
        "user_agent",
    ),
)
# The event's columns PAYLOAD_HASH_V1 leaves out, and why (metadata is hashed: it follows the
# array). The hash compares two requests' bodies, so what the server assigns stays out.
NOT_IN_PAYLOAD_HASH = {
    "id": "assigned by the database",
    "uuid": "assigned by the server",
    "received_at": "assigned by the server: a replay arrives later",
    "source_id": "replays are looked up within one source already",
    "idempotency_key": "what the hash is compared under",
    "payload_hash": "the hash itself",
}


@dataclass(frozen=True)
class LeafFormat:
    """An event as a leaf of the trail's Merkle tree: the RFC 8785 (JCS) bytes of one flat JSON
    object with "v" (the version), "leaf_index", and the event's `fields`, each under its name
    in `names` (else its column's name). Values: text as is, UUIDs hyphenated, datetimes in UTC
    as YYYY-MM-DDTHH:MM:SS.ffffffZ (always six digits: not the API's milliseconds), metadata as
    the JSON object it is, null for NULL; the source is its API key's prefix. The export bundle
    writes these objects (auditlog.trail.bundle); the API's JSON form and other exports do not."""

    version: int
    fields: tuple[str, ...]
    names: Mapping[str, str]

    def obj(self, leaf_index: int, values: Sequence) -> dict:
        """`values`: the fields' values in that order (the source as its key's prefix)."""
        obj: dict[str, Any] = {"v": self.version, "leaf_index": leaf_index}
        for field, value in zip(self.fields, values, strict=True):
            if isinstance(value, datetime):
                value = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            elif isinstance(value, UUID):
                value = str(value)
            obj[self.names.get(field, field)] = value
        return obj

    def leaf(self, leaf_index: int, values: Sequence) -> bytes:
        """jcs.canonical(self.obj(...)), written directly (the API's proofs, exports): each
        member's text in the canonical order worked out once, each value as RFC 8785 writes
        it. tests/test_formats.py holds the two to the same bytes."""
        parts = list(self._template)
        parts[self._positions[0]] = str(leaf_index)
        for position, value in zip(self._positions[1:], values, strict=True):
            if value is None:
                parts[position] = "null"
            elif type(value) is str:
                parts[position] = jcs.string(value)
            elif isinstance(value, datetime):
                parts[position] = '"' + value.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + 'Z"'
            elif isinstance(value, UUID):
                parts[position] = f'"{value}"'
            else:
                parts[position] = jcs.text(value)
        return jcs.utf8("".join(parts))

    def leaf_of_json_values(self, leaf_index: int, values: Sequence) -> bytes:
        """The leaf of fields already as JSON values (datetimes and UUIDs as their texts) holding
        no number but integers of at most 15 digits (sealing and verifying, every event:
        auditlog.trail.leaf_rows). Python's C encoder writes the whole object; where that is
        not provably RFC 8785's text (a name or string at U+E000 or above, whose order in
        UTF-16 code units may differ), jcs.canonical does."""
        obj = dict(zip(self._names, values, strict=True))
        obj["v"] = self.version
        obj["leaf_index"] = leaf_index
        text = _ENCODE_SORTED(obj)
        if text.isascii() or max(text) < "\ue000":
            return jcs.utf8(text)
        return jcs.canonical(obj)

    @cached_property
    def _names(self) -> tuple[str, ...]:
        return tuple(self.names.get(field, field) for field in self.fields)

    @cached_property
    def _layout(self) -> tuple[list[str], tuple[int, ...]]:
        """The leaf as a list of texts, "{", '"name":', value, ",", ... "}", with "v" filled in,
        and the positions of leaf_index's and each field's value in it."""
        names = ["v", "leaf_index", *self._names]
        if not all(name.isascii() and name.isidentifier() for name in names):
            raise ValueError("leaf member names are plain ASCII: their order and form need no escaping")
        parts, position = ["{"], {}
        for name in sorted(names):
            parts.append(("," if len(parts) > 1 else "") + f'"{name}":')
            position[name] = len(parts)
            parts.append(str(self.version) if name == "v" else "")
        parts.append("}")
        return parts, tuple(position[name] for name in names[1:])

    @property
    def _template(self) -> list[str]:
        return self._layout[0]

    @property
    def _positions(self) -> tuple[int, ...]:
        return self._layout[1]


LEAF_V1 = LeafFormat(
    version=1,
    fields=(
        "uuid",
        "occurred_at",
        "received_at",
        "action",
        "actor_id",
        "actor_type",
        "actor_name",
        "target_type",
        "target_id",
        "target_name",
        "outcome",
        "ip_address",
        "user_agent",
        "metadata",
        "idempotency_key",
        "source_id",
        "payload_hash",
    ),
    names={"uuid": "id", "source_id": "source"},
)
# The event's columns LEAF_V1 leaves out, and why.
NOT_IN_LEAF = {
    "id": "the database's own number, which no export shows: the leaf has the public id and its index"
}
