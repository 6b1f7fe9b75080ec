"""A verifiable export: every event the trail still holds with the checkpoint it verifies against
(docs/trail-format.md), for the offline verifier (auditlog.trail.offline bundle).

JSON Lines, UTF-8. Line 1: {"format": "auditlog-bundle/v1", "checkpoint": <signed note>,
"prefix": {"size": A, "hashes": [base64, ...]}, "retention": [<signed note>, ...]}, where the
prefix is the compact range of the leaves [0, A) whose events a purge removed (the hashes of
the perfect subtrees it splits into, largest first), and "retention" the signed records of
those purges, which together name leaves 0 to A - 1. Then one line per leaf A..N-1 of the
checkpoint's tree: the leaf's JSON object (LEAF_V1), whose RFC 8785 bytes are the leaf.
"""

import base64
import json
from collections.abc import Iterator

from auditlog.events.formats import LEAF_V1
from auditlog.models import ActionLog, Checkpoint, RetentionRecord, TrailLeaf
from auditlog.trail import merkle
from auditlog.trail.leaf_rows import LEAF_COLUMNS
from auditlog.trail.tree import StoredTree, TrailError, checkpoint_latest

FORMAT = "auditlog-bundle/v1"
CHUNK = 2000
_line = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def bundle_lines(checkpoint: Checkpoint | None = None) -> Iterator[str]:
    checkpoint = checkpoint or checkpoint_latest()
    if checkpoint is None:
        raise TrailError("no checkpoint has been signed yet: run auditlog_seal with AUDITLOG_TRAIL_KEY")
    size = checkpoint.tree_size
    last_purged = RetentionRecord.objects.order_by("-last_leaf").values_list("last_leaf", flat=True).first()
    start = 0 if last_purged is None else min(last_purged + 1, size)
    prefix = merkle.compact_range_hashes(StoredTree().read, start)
    header = {
        "format": FORMAT,
        "checkpoint": checkpoint.note,
        "prefix": {"size": start, "hashes": [base64.b64encode(value).decode() for value in prefix]},
        # the signed records of the purges that emptied the prefix: a purge, not a deletion
        "retention": list(
            RetentionRecord.objects.filter(last_leaf__lt=start)
            .order_by("last_leaf")
            .values_list("note", flat=True)
        ),
    }
    yield _line(header) + "\n"
    index = start
    while index < size:
        leaves = list(
            TrailLeaf.objects.filter(leaf_index__gte=index, leaf_index__lt=min(index + CHUNK, size))
            .order_by("leaf_index")
            .values_list("leaf_index", "event_id")
        )
        events = {
            row[0]: row[1:]
            for row in ActionLog.objects.filter(id__in=[event_id for _, event_id in leaves]).values_list(
                "id", *LEAF_COLUMNS
            )
        }
        for leaf_index, event_id in leaves:
            if leaf_index != index or event_id not in events:
                raise TrailError(f"leaf {index} or its event is missing: run auditlog_verify")
            yield _line(LEAF_V1.obj(leaf_index, events[event_id])) + "\n"
            index += 1
