"""RFC 9162 Merkle trees (auditlog.trail.merkle), against the published test vectors of
transparency-dev/merkle (tests/data/rfc9162_vectors.json: the RFC 6962 reference tree of 8
leaves, and 196 proofs to accept or reject) and against itself on larger trees."""

import base64
import hashlib
import json
from pathlib import Path

import pytest

from auditlog.trail import merkle

VECTORS = json.loads((Path(__file__).parent / "data" / "rfc9162_vectors.json").read_text())
LEAVES = [bytes.fromhex(leaf) for leaf in VECTORS["leaves_hex"]]
ROOTS = [bytes.fromhex(root) for root in VECTORS["roots_hex"]]


def b64(values):
    return [base64.b64decode(value) for value in values or []]


def reader(leaves: list[bytes]):
    """A NodeReader over an in-memory list of leaves (perfect subtrees only)."""
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]

    def read(height: int, index: int) -> bytes:
        start = index << height
        assert start + (1 << height) <= len(hashes), "read a node that is not complete"
        return merkle.root_of(hashes[start : start + (1 << height)])

    return read


def test_roots_of_the_reference_tree():
    for size, root in enumerate(ROOTS):
        hashes = [merkle.leaf_hash(leaf) for leaf in LEAVES[:size]]
        assert merkle.root_of(hashes) == root
        assert merkle.tree_root(reader(LEAVES[:size]), size) == root


@pytest.mark.parametrize("vector", VECTORS["inclusion"], ids=lambda v: v["file"])
def test_inclusion_vectors(vector):
    args = (b64([vector["leafHash"]])[0], vector["leafIdx"], vector["treeSize"], b64(vector["proof"]))
    root = base64.b64decode(vector["root"])
    if vector["wantErr"]:
        with pytest.raises(merkle.ProofError):
            merkle.inclusion_verify(*args, root)
    else:
        merkle.inclusion_verify(*args, root)
        if root in ROOTS and vector["treeSize"] <= len(LEAVES):  # the reference tree: we make that proof
            made = merkle.inclusion_proof(reader(LEAVES), vector["leafIdx"], vector["treeSize"])
            assert made == b64(vector["proof"])


@pytest.mark.parametrize("vector", VECTORS["consistency"], ids=lambda v: v["file"])
def test_consistency_vectors(vector):
    first, second = vector["size1"], vector["size2"]
    roots = base64.b64decode(vector["root1"]), base64.b64decode(vector["root2"])
    # One vector passes placeholder roots ("don't care") of 12 bytes; we refuse any hash that is
    # not 32 bytes, so for us that one is an error too.
    if vector["wantErr"] or any(len(root) != 32 for root in roots):
        with pytest.raises(merkle.ProofError):
            merkle.consistency_verify(first, second, *roots, b64(vector["proof"]))
    else:
        merkle.consistency_verify(first, second, *roots, b64(vector["proof"]))
        if second <= len(LEAVES) and roots == (ROOTS[first], ROOTS[second]):
            assert merkle.consistency_proof(reader(LEAVES), first, second) == b64(vector["proof"])


def test_every_proof_of_trees_up_to_70_leaves_verifies_and_a_changed_hash_fails():
    leaves = [hashlib.sha256(str(i).encode()).digest() for i in range(70)]
    read = reader(leaves)
    roots = [merkle.tree_root(read, size) for size in range(71)]
    for size in range(1, 71):
        assert roots[size] == merkle.root_of([merkle.leaf_hash(leaf) for leaf in leaves[:size]])
        for index in range(size):
            proof = merkle.inclusion_proof(read, index, size)
            merkle.inclusion_verify(merkle.leaf_hash(leaves[index]), index, size, proof, roots[size])
            if proof:
                bad = [*proof[:-1], bytes(32)]
                with pytest.raises(merkle.ProofError):
                    merkle.inclusion_verify(merkle.leaf_hash(leaves[index]), index, size, bad, roots[size])
        for first in range(1, size + 1):
            proof = merkle.consistency_proof(read, first, size)
            merkle.consistency_verify(first, size, roots[first], roots[size], proof)
            if first < size:
                with pytest.raises(merkle.ProofError):
                    merkle.consistency_verify(first, size, roots[first], roots[size - 1], proof)
