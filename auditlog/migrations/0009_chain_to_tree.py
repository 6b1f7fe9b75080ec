"""The hash chain gives way to the Merkle tree: verified once with its HMAC key, its events become
the tree's first leaves in the same order, and its tables go.

- No chain (nothing was ever sealed with AUDITLOG_SEAL_KEY): the tables just go.
- A chain: AUDITLOG_SEAL_KEY (and AUDITLOG_SEAL_OLD_KEYS, comma-separated) must be in the
  environment of this one migrate; the chain must verify (auditlog.trail.legacy_chain), or the
  migration stops and changes nothing. Then, if the tree has no leaves yet, every sealed event
  becomes a leaf, in id order (the next auditlog_seal signs the first checkpoint). If the tree
  already grew beside the chain, it covers them already.
"""

import os

from django.db import migrations

MSG_NO_KEY = (
    "This database holds a hash chain sealed with AUDITLOG_SEAL_KEY: migrate verifies it once before "
    "its tables go. Run this migrate with AUDITLOG_SEAL_KEY (and AUDITLOG_SEAL_OLD_KEYS, comma-separated) "
    "in its environment."
)


def chain_to_tree(apps, schema_editor):
    from auditlog.trail import legacy_chain

    EventSeal = apps.get_model("auditlog", "EventSeal")  # noqa: N806
    SealBlock = apps.get_model("auditlog", "SealBlock")  # noqa: N806
    SealAnchor = apps.get_model("auditlog", "SealAnchor")  # noqa: N806
    ActionLog = apps.get_model("auditlog", "ActionLog")  # noqa: N806
    TrailLeaf = apps.get_model("auditlog", "TrailLeaf")  # noqa: N806
    if not SealBlock.objects.exists() and not SealAnchor.objects.exists():
        return
    keys = [os.environ.get("AUDITLOG_SEAL_KEY", ""), *os.environ.get("AUDITLOG_SEAL_OLD_KEYS", "").split(",")]
    keys = [key for key in keys if key]
    if not keys:
        raise RuntimeError(MSG_NO_KEY)
    problem = legacy_chain.chain_problem(keys, ActionLog, EventSeal, SealBlock, SealAnchor)
    if problem is not None:
        raise RuntimeError(
            f"The hash chain does not verify: {problem}. Nothing was migrated; find out what happened "
            "(auditlog_verify of the previous release names it) before going on."
        )
    if TrailLeaf.objects.exists():
        return
    from auditlog.trail.tree import leaves_append

    head = SealBlock.objects.order_by("-last_event_id").values_list("last_event_id", flat=True).first()
    leaves_append(upto_id=head, block_size=5000)


class Migration(migrations.Migration):
    dependencies = [("auditlog", "0008_retention_record")]

    operations = [
        migrations.RunPython(chain_to_tree, migrations.RunPython.noop),
        migrations.DeleteModel(name="EventSeal"),
        migrations.DeleteModel(name="SealAnchor"),
        migrations.DeleteModel(name="SealBlock"),
    ]
