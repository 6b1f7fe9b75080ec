import contextlib
import itertools
import os
import sys
import time

from django.core.management.base import BaseCommand, CommandError
from django.http import QueryDict

from auditlog.admin.access import access_event
from auditlog.db.private_files import private_file_open_overwrite
from auditlog.db.replica import replica_reads
from auditlog.db.timeouts import command_timeouts
from auditlog.events.validation import ValidationFailed
from auditlog.reading.export import FORMATS, events_export_lines
from auditlog.reading.filters import event_filters_parse
from auditlog.reading.selectors import event_queryset, events_iterate
from auditlog.trail.bundle import bundle_lines
from auditlog.trail.tree import TrailError

FILTERS = {
    "actor_id": "Exact actor id.",
    "actor_type": "Exact actor type, e.g. user.",
    "action": "Exact action (invoice.delete) or a prefix ending in .* (invoice.*).",
    "target_type": "Exact target type, e.g. invoice.",
    "target_id": "Exact target id.",
    "outcome": "success or failure.",
    "since": "Events that occurred at or after this RFC 3339 time, e.g. 2026-01-31T00:00:00Z.",
    "until": "Events that occurred before this RFC 3339 time, e.g. 2026-02-01T00:00:00+01:00.",
}


class Command(BaseCommand):
    help = (
        "Export events, newest first, as CSV or JSON Lines, with the API's filters. Streams in "
        "constant memory (a million events stay well under 200 MB); shows progress on a terminal."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=FORMATS, default="csv", help="csv (default) or jsonl.")
        parser.add_argument(
            "--output",
            "-o",
            default="-",
            help=(
                "File to write, readable by its owner only (0600; an existing file is tightened to "
                "0600, then overwritten); - (default) for standard output."
            ),
        )
        parser.add_argument(
            "--bundle",
            action="store_true",
            help=(
                "Instead: every event the trail still holds, as the leaves of its Merkle tree, with the "
                "latest signed checkpoint, for the offline verifier (docs/trail-format.md). Filters do "
                "not apply: the verifier recomputes the whole tree."
            ),
        )
        for name, text in FILTERS.items():
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name, help=text)

    # An export reads in keyset chunks of 2,000, each a short query with no transaction held
    # between them, so it may stream for as long as the output takes (a pipe to gzip).
    @command_timeouts(statement=60, lock=5)
    def handle(self, *args, output, bundle, **options):
        export_format = options["format"]
        params = QueryDict(mutable=True)
        for name in FILTERS:
            if options[name] is not None:
                params[name] = options[name]
        try:
            filters = event_filters_parse(params)
        except ValidationFailed as failure:
            problems = "; ".join(
                f"--{name.replace('_', '-')}: {' '.join(msgs)}" for name, msgs in failure.fields.items()
            )
            raise CommandError(problems) from None
        if bundle:
            if any(options[name] is not None for name in FILTERS):
                raise CommandError("--bundle holds every event the trail holds: it takes no filters.")
            try:
                lines = bundle_lines()
                header_lines = 1
                first = next(lines)
            except TrailError as exc:
                raise CommandError(str(exc)) from None
            lines = itertools.chain([first], lines)
        else:
            lines = events_export_lines(events_iterate(event_queryset(filters)), export_format)
            header_lines = 1 if export_format == "csv" else 0
        # The events may come from a replica (docs/replicas.md); a bundle, whose leaves must match
        # the checkpoint, from the primary.
        with contextlib.nullcontext() if bundle else replica_reads():
            self._output(lines, output, header_lines)
        access_event(  # who took the events out, as the admin's exports are recorded
            "auditlog.events.export",
            target_type="events",
            target_id="bundle" if bundle else export_format,
            metadata={"filters": dict(params.items()), "output": output},
        )

    def _output(self, lines, output, header_lines):
        started = time.monotonic()
        if output == "-":
            try:
                written = self._write(lines, lambda line: self.stdout.write(line, ending=""))
            except BrokenPipeError:  # `| head`: the reader has all it wants; stop quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return
        else:
            try:
                with private_file_open_overwrite(output) as file:
                    written = self._write(lines, file.write)
            except OSError as exc:
                raise CommandError(f"Cannot write {output}: {exc.strerror}") from None
        events = written - header_lines
        self.stderr.write(f"Exported {events:,} events in {time.monotonic() - started:.1f} s.")

    def _write(self, lines, write) -> int:
        """Write every line; show progress on stderr when it is a terminal. Return the count."""
        progress = self.stderr.isatty()
        started, written = time.monotonic(), 0
        for written, line in enumerate(lines, start=1):  # noqa: B007 (written is the count)
            write(line)
            if progress and written % 10_000 == 0:
                rate = written / (time.monotonic() - started)
                self.stderr.write(f"\r{written:,} lines ({rate:,.0f}/s)", ending="")
        if progress:
            self.stderr.write("")
        return written
