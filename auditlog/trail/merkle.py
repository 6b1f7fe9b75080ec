"""RFC 9162 (Certificate Transparency 2.0) Merkle trees, §2.1: the tree hash, inclusion proofs
and consistency proofs, and their verification. Standard library only, so the offline verifier
uses the very same code as the service.

A tree is read through `NodeReader`: the hash of the perfect subtree of 2**height leaves that
starts at leaf index * 2**height. How those hashes are stored is the caller's business
(auditlog.trail.tree); everything here derives the rest, exactly as the RFC's recursive
definitions do, with the subtree boundaries of MTH: a range [start, end) of a tree is split at
the largest power of two smaller than its size.
"""

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

# (height, index) -> the hash of leaves [index * 2**height, (index + 1) * 2**height)
NodeReader = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof that does not prove what it claims, or a request no proof can answer."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two smaller than size (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (small lists: tests, tiles, the offline verifier's input)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = paired + ([level[-1]] if len(level) % 2 else [])
    return level[0]


def range_hash(read: NodeReader, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range that is a node of some tree: start is a multiple of the
    largest power of two not above end - start (every range MTH's recursion reaches is)."""
    size = end - start
    if size <= 0:
        raise ProofError("an empty range has no node")
    if size & (size - 1) == 0:
        height = size.bit_length() - 1
        return read(height, start >> height)
    k = _split(size)
    return node_hash(range_hash(read, start, start + k), range_hash(read, start + k, end))


def tree_root(read: NodeReader, size: int) -> bytes:
    return range_hash(read, 0, size) if size else EMPTY_ROOT


def _path(read: NodeReader, index: int, start: int, end: int) -> list[bytes]:
    """PATH(m, D[start:end]), RFC 9162 §2.1.3.1, bottom-up."""
    if end - start == 1:
        return []
    k = _split(end - start)
    if index < start + k:
        return _path(read, index, start, start + k) + [range_hash(read, start + k, end)]
    return _path(read, index, start + k, end) + [range_hash(read, start, start + k)]


def inclusion_proof(read: NodeReader, index: int, size: int) -> list[bytes]:
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    return _path(read, index, 0, size)


def _subproof(read: NodeReader, first: int, start: int, end: int, whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[start:end], b), RFC 9162 §2.1.4.1, with m = first - start."""
    if first == end:
        return [] if whole else [range_hash(read, start, end)]
    k = _split(end - start)
    if first <= start + k:
        return _subproof(read, first, start, start + k, whole) + [range_hash(read, start + k, end)]
    return _subproof(read, first, start + k, end, False) + [range_hash(read, start, start + k)]


def consistency_proof(read: NodeReader, first: int, second: int) -> list[bytes]:
    if not 0 < first <= second:
        raise ProofError(f"no consistency proof from {first} to {second} leaves (0 < first <= second)")
    return _subproof(read, first, 0, second, True)


def _hashes(*hashes: bytes) -> None:
    if any(len(value) != HASH_SIZE for value in hashes):
        raise ProofError(f"a hash is {HASH_SIZE} bytes")


def inclusion_verify(leaf_hash_: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2; raises ProofError unless the proof shows the leaf at index in the tree."""
    _hashes(leaf_hash_, root, *proof)
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn, r = index, size - 1, leaf_hash_
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if r != root:
        raise ProofError("the inclusion proof leads to another root")


def consistency_verify(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2; raises ProofError unless the tree of `first` leaves is a prefix of the
    tree of `second` leaves."""
    _hashes(first_root, second_root, *proof)
    if not 0 < first <= second:
        raise ProofError(f"no consistency proof from {first} to {second} leaves (0 < first <= second)")
    if first == second:
        if proof:
            raise ProofError("a proof between trees of the same size is empty")
        if first_root != second_root:
            raise ProofError("two trees of the same size with different roots")
        return
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    if not path:
        raise ProofError("the consistency proof is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the tree is deep")
    if fr != first_root:
        raise ProofError("the consistency proof does not lead to the first tree's root")
    if sr != second_root:
        raise ProofError("the consistency proof does not lead to the second tree's root")


# --- compact ranges ---------------------------------------------------------------------------
# The compact range of leaves [0, size) is the list of the hashes of the perfect subtrees that
# [0, size) decomposes into, largest (leftmost) first: one per set bit of size, as
# transparency-dev/merkle's compact.Range keeps them. It is all one needs to append leaves and
# compute the root, so an export can leave out the leaves before its first one (purged or
# filtered) and still be checked against a signed checkpoint.


def _compact_check(hashes: Sequence[bytes], size: int) -> None:
    if size < 0:
        raise ProofError("a tree has 0 or more leaves")
    if len(hashes) != size.bit_count():
        raise ProofError(
            f"the compact range of {size} leaves has {size.bit_count()} hashes (one per set bit),"
            f" not {len(hashes)}"
        )
    _hashes(*hashes)


def compact_range_hashes(read: NodeReader, size: int) -> list[bytes]:
    """The compact range of leaves [0, size) of a tree read through `read`, largest first."""
    hashes = []
    start = 0
    for height in reversed(range(size.bit_length())):
        if size >> height & 1:
            hashes.append(read(height, start >> height))
            start += 1 << height
    return hashes


def compact_append(hashes: list[bytes], size: int, leaf_hash_: bytes) -> None:
    """Extend `hashes`, the compact range of leaves [0, size), in place by the leaf at index
    size: the new leaf merges with the subtrees that end where it starts, one per trailing one
    bit of size."""
    _hashes(leaf_hash_)
    hashes.append(leaf_hash_)
    while size & 1:
        right = hashes.pop()
        hashes[-1] = node_hash(hashes[-1], right)
        size >>= 1


def compact_range_root(hashes: Sequence[bytes], size: int) -> bytes:
    """MTH of leaves [0, size) from their compact range: MTH splits at the largest power of two
    below the size, which is the first subtree, so the root folds the hashes from the right."""
    _compact_check(hashes, size)
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for value in reversed(hashes[:-1]):
        root = node_hash(value, root)
    return root


def compact_root(prefix_hashes: Sequence[bytes], prefix_size: int, leaf_hashes: Iterable[bytes]) -> bytes:
    """The root of the tree of prefix_size + len(leaf_hashes) leaves, from the compact range of
    its first prefix_size leaves and the hashes of the leaves that follow (any iterable: a
    stream of millions needs memory for 64 hashes only)."""
    _compact_check(prefix_hashes, prefix_size)
    hashes = list(prefix_hashes)
    size = prefix_size
    for value in leaf_hashes:
        compact_append(hashes, size, value)
        size += 1
    return compact_range_root(hashes, size)
