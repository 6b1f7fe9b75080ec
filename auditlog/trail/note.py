"""C2SP signed notes with Ed25519 keys, and tlog-checkpoint bodies (https://c2sp.org/signed-note,
https://c2sp.org/tlog-checkpoint). No Django: the offline verifier uses this module too.

A signed note is a text ending in a newline, an empty line, then one line per signature:
"— <key name> <base64(4-byte key id || signature)>". An Ed25519 key's id is the first four
bytes of SHA-256(name || "\\n" || 0x01 || public key). Keys are written as Go's
golang.org/x/mod/sumdb/note writes them:

    verifier key:  <name>+<key id, 8 hex digits>+<base64(0x01 || 32-byte public key)>
    signer key:    PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>

A checkpoint body is "<origin>\\n<tree size>\\n<base64 root hash>\\n" and extension lines; ours
carry "time <unix seconds>", so that a checkpoint signed on a quiet minute differs from the one
before it, and (but the first) "previous <tree size> <unix seconds>" of the checkpoint before it.
"""

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = b"\x01"
DASH = "\u2014"  # the em dash that starts a signature line


class NoteError(ValueError):
    """A key, note or checkpoint that is malformed, or a signature that does not verify."""


def _decimal(text: str) -> bool:
    """ASCII digits only (str.isdigit takes other scripts' digits and superscripts too)."""
    return text.isascii() and text.isdigit()


def _key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + public).digest()[:4]


def _check_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() for ch in name) or not name.isprintable():
        raise NoteError(f"a key name is printable, without spaces or '+': {name!r}")


@dataclass(frozen=True)
class Verifier:
    name: str
    key_id: bytes
    public: Ed25519PublicKey

    @classmethod
    def parse(cls, vkey: str) -> "Verifier":
        try:
            name, _, rest = vkey.strip().partition("+")
            key_id, _, key = rest.partition("+")  # base64 has '+' of its own
            raw = base64.b64decode(key, validate=True)
            key_id_bytes = bytes.fromhex(key_id)
        except (ValueError, binascii.Error):
            raise NoteError(f"not a verifier key: {vkey!r}") from None
        _check_name(name)
        if len(raw) != 33 or raw[:1] != ALG_ED25519 or len(key_id_bytes) != 4:
            raise NoteError("not an Ed25519 verifier key (algorithm 0x01, 32 bytes)")
        if _key_id(name, raw[1:]) != key_id_bytes:
            raise NoteError("the verifier key's id does not match its name and key")
        return cls(name, key_id_bytes, Ed25519PublicKey.from_public_bytes(raw[1:]))

    def text(self) -> str:
        raw = self.public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(ALG_ED25519 + raw).decode()}"


@dataclass(frozen=True)
class Signer:
    name: str
    key_id: bytes
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> "Signer":
        _check_name(name)
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(name, _key_id(name, public), private)

    @classmethod
    def parse(cls, skey: str) -> "Signer":
        prefix = "PRIVATE+KEY+"
        name, _, rest = skey.strip().removeprefix(prefix).partition("+")
        key_id, _, key = rest.partition("+")
        try:
            raw = base64.b64decode(key, validate=True)
        except binascii.Error:
            raise NoteError("not a signer key (PRIVATE+KEY+name+id+key)") from None
        if not skey.strip().startswith(prefix) or len(raw) != 33 or raw[:1] != ALG_ED25519:
            raise NoteError("not an Ed25519 signer key (PRIVATE+KEY+name+id+base64(0x01 || seed))")
        _check_name(name)
        private = Ed25519PrivateKey.from_private_bytes(raw[1:])
        signer = cls(
            name, _key_id(name, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)), private
        )
        if signer.key_id.hex() != key_id.lower():
            raise NoteError("the signer key's id does not match its name and key")
        return signer

    def text(self) -> str:
        seed = self.private.private_bytes_raw()
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{base64.b64encode(ALG_ED25519 + seed).decode()}"

    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, self.private.public_key())

    def sign(self, text: str) -> str:
        """The signed note of `text` (which ends with a newline)."""
        if not text.endswith("\n") or "\n\n" in text:
            raise NoteError("a note's text ends with a newline and has no empty line")
        signature = self.private.sign(text.encode())
        return f"{text}\n{DASH} {self.name} {base64.b64encode(self.key_id + signature).decode()}\n"


def verifiers_of(signer: "Signer | None", texts: list[str]) -> list[Verifier]:
    """The verifier keys a key's notes may carry: `signer`'s own first (when this process holds
    it), then the verifier keys `texts` (earlier keys after a rotation); NoteError for a bad one."""
    verifiers = [Verifier.parse(text) for text in texts]
    if signer is not None and signer.verifier() not in verifiers:
        verifiers.insert(0, signer.verifier())
    return verifiers


def note_open(note: str, verifiers: list[Verifier]) -> str:
    """The text of a signed note that at least one of `verifiers` signed; NoteError otherwise.
    Signatures by unknown keys are ignored, as C2SP says; a known key's bad signature is not."""
    text, sep, signatures = note.rpartition("\n\n")
    if not sep or not signatures.endswith("\n"):
        raise NoteError("not a signed note: no empty line before the signatures")
    text += "\n"
    known = {(v.name, v.key_id): v for v in verifiers}
    verified = False
    for line in signatures[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise NoteError(f"not a signature line: {line!r}")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            raise NoteError(f"a signature that is not base64: {line!r}") from None
        verifier = known.get((parts[1], blob[:4]))
        if verifier is None:
            continue
        try:
            verifier.public.verify(blob[4:], text.encode())
        except InvalidSignature:
            raise NoteError(f"the signature of {verifier.name} does not verify") from None
        verified = True
    if not verified:
        raise NoteError("no signature by a known key")
    return text


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "".join(f"{line}\n" for line in lines)

    @property
    def time(self) -> int | None:
        """Unix seconds from our "time" extension line, if there is one."""
        for line in self.extensions:
            if line.startswith("time ") and _decimal(line[5:]):
                return int(line[5:])
        return None

    @property
    def previous(self) -> tuple[int, int] | None:
        """(tree size, unix seconds) of the checkpoint signed before this one, from our
        "previous" extension line: a checkpoint removed from between two others shows."""
        for line in self.extensions:
            parts = line.split(" ")
            if len(parts) == 3 and parts[0] == "previous" and _decimal(parts[1]) and _decimal(parts[2]):
                return int(parts[1]), int(parts[2])
        return None

    @classmethod
    def parse(cls, text: str) -> "Checkpoint":
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:-1]):
            raise NoteError("a checkpoint is at least three non-empty lines, each ending with a newline")
        origin, size, root, *extensions = lines[:-1]
        try:
            root_bytes = base64.b64decode(root, validate=True)
        except binascii.Error:
            raise NoteError("the checkpoint's root hash is not base64") from None
        if not _decimal(size) or (size != "0" and size.startswith("0")) or len(root_bytes) != 32:
            raise NoteError("a checkpoint has a decimal tree size and a 32-byte root hash")
        return cls(origin, int(size), root_bytes, tuple(extensions))


def retention_leaves(text: str) -> tuple[int, int]:
    """The leaf range a retention record's signed text names (its line "leaves FIRST-LAST"):
    the leaves whose events a purge removed by policy (auditlog.trail.retention)."""
    for line in text.split("\n"):
        first, dash, last = line.removeprefix("leaves ").partition("-")
        if line.startswith("leaves ") and dash and _decimal(first) and _decimal(last):
            return int(first), int(last)
    raise NoteError("a retention record names its leaves (leaves FIRST-LAST)")
