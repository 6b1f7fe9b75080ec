import itertools
import json
from datetime import UTC

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from auditlog.admin.chart import activity_chart
from auditlog.admin.filters import ActionFilter, ActorTypeFilter, OccurredRangeFilter, TargetTypeFilter
from auditlog.admin.pagination import BoundedCountPaginator
from auditlog.db.replica import reads_from_replica, replica_status
from auditlog.ingest.services import event_record_internal
from auditlog.models import ActionLog, Checkpoint
from auditlog.reading.export import CONTENT_TYPES, FORMATS, events_export_lines
from auditlog.reading.selectors import TARGET_PREFIX, event_search, events_iterate
from auditlog.trail.bundle import bundle_lines
from auditlog.trail.tree import TrailError


def utc_moment(value) -> str:
    """2026-11-23 08:41:07.123: UTC, to the millisecond, so that events of one minute can be
    told apart and ordered by eye; the zone is said once, in the column's or field's title."""
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%d %H:%M:%S}.{value.microsecond // 1000:03d}"


def event_changes(metadata) -> list[tuple[str, str, str]]:
    """(field, before, after) from metadata {"changes": {field: [before, after]}}, the shape
    Django audit apps store, by field name; a value that is not text is shown as its JSON."""
    changes = metadata.get("changes") if isinstance(metadata, dict) else None
    if not isinstance(changes, dict):
        return []
    rows = []
    for field, pair in sorted(changes.items()):  # by name: jsonb keeps no order
        if not (isinstance(pair, list) and len(pair) == 2):
            return []  # another shape: the raw JSON below says it all
        rows.append(
            (
                field,
                *(
                    value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                    for value in pair
                ),
            )
        )
    return rows


SEARCH_HELP = 'Exact match: an actor id (42), "target:7" or "target:invoice:7", or an event id (UUID).'


@admin.register(ActionLog)
class ActionLogAdmin(admin.ModelAdmin):
    """Read-only for everyone, superusers included: no add, change, delete or bulk action."""

    list_display = ("occurred", "actor", "action", "target", "outcome", "ip_address")
    list_filter = (OccurredRangeFilter, ActionFilter, "outcome", ActorTypeFilter, TargetTypeFilter)
    # The query parameters of those filters, and the only ones accepted: Django would run any
    # lookup on a local field (`?actor_name__regex=.*` reads the whole table).
    filter_parameters = frozenset(
        {
            *OccurredRangeFilter.parameters,
            ActionFilter.parameter_name,
            "outcome__exact",
            ActorTypeFilter.parameter_name,
            TargetTypeFilter.parameter_name,
        }
    )
    search_fields = ("actor_id",)  # shows the search box; get_search_results does the matching
    search_help_text = SEARCH_HELP
    ordering = ("-occurred_at", "-id")
    paginator = BoundedCountPaginator
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = None
    fieldsets = (
        ("Event", {"fields": ("uuid", "action", "outcome", "occurred", "received")}),
        ("Actor", {"fields": ("actor_id", "actor_type", "actor_name", "actor_events")}),
        ("Target", {"fields": ("target_type", "target_id", "target_name", "target_events")}),
        ("Context", {"fields": ("ip_address", "user_agent", "changes", "pretty_metadata")}),
        ("Provenance", {"fields": ("source", "idempotency_key", "payload_hash")}),
    )
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def lookup_allowed(self, lookup, value, request=None):
        """Only the listed filters: any other parameter answers 400 (DisallowedModelAdminLookup),
        on the list and on the exports alike, before a query runs."""
        return lookup in self.filter_parameters

    def get_search_results(self, request, queryset, search_term):
        return event_search(queryset, search_term), False

    @admin.display(description="occurred (UTC)", ordering="occurred_at")
    def occurred(self, event):
        return utc_moment(event.occurred_at)

    @admin.display(description="received (UTC)")
    def received(self, event):
        return utc_moment(event.received_at)

    @admin.display(description="changes")
    def changes(self, event):
        """metadata.changes as field, before, after (docs/api.md: the convention), escaped like
        everything else; "—" when the event has none in that shape."""
        rows = event_changes(event.metadata)
        if not rows:
            return "—"
        return format_html(
            '<table class="auditlog-changes"><thead><tr><th scope="col">field</th><th scope="col">before</th>'
            '<th scope="col">after</th></tr></thead><tbody>{}</tbody></table>',
            format_html_join("", '<tr><th scope="row">{}</th><td>{}</td><td>{}</td></tr>', rows),
        )

    def history_view(self, request, object_id, extra_context=None):
        """No change history: nobody can change an event (Django's History page would list none)."""
        raise Http404("Events have no change history: they are never changed.")

    @admin.display(description="actor", ordering="actor_id")
    def actor(self, event):
        return " ".join(
            filter(
                None, (event.actor_id, f"({event.actor_type})" if event.actor_type else "", event.actor_name)
            )
        )

    @admin.display(description="target")
    def target(self, event):
        return ":".join(filter(None, (event.target_type, event.target_id)))

    @admin.display(description="metadata")
    def pretty_metadata(self, event):
        return format_html(
            "<pre>{}</pre>", json.dumps(event.metadata, indent=2, ensure_ascii=False, sort_keys=True)
        )

    @admin.display(description="related")
    def actor_events(self, event):
        return self._search_link("Other events by this actor", event.actor_id)

    @admin.display(description="related")
    def target_events(self, event):
        if not event.target_id:
            return "—"
        term = (
            f"{TARGET_PREFIX}{event.target_type}:{event.target_id}"
            if event.target_type
            else f"{TARGET_PREFIX}{event.target_id}"
        )
        return self._search_link("Other events on this target", term)

    def _search_link(self, label, term):
        url = reverse("admin:auditlog_actionlog_changelist") + "?" + urlencode({"q": term})
        return format_html('<a href="{}">{}</a>', url, label)

    @reads_from_replica
    def changelist_view(self, request, extra_context=None):
        # The bundle link only once a checkpoint exists (one indexed row to look for).
        extra_context = {
            **(extra_context or {}),
            "trail_signed": Checkpoint.objects.exists(),
            "replica_status": replica_status(),
        }
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:  # not a redirect: the chart of what the list shows
            response.context_data["chart"] = activity_chart(request, changelist.queryset)
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Rendered first, then recorded: a replica that fails the read re-runs only the read.
        response = self._change_view_read(request, object_id, form_url, extra_context)
        if response.status_code == 200:
            event_record_internal(
                action="auditlog.event.view",
                request=request,
                actor_id=request.user.get_username(),
                target_type="audit_event",
                target_id=str(response.context_data["original"].uuid),
            )
        return response

    @reads_from_replica
    def _change_view_read(self, request, object_id, form_url, extra_context):
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_view)
        return [
            path("export/<str:export_format>/", export, name="auditlog_actionlog_export"),
            *super().get_urls(),
        ]

    def export_view(self, request, export_format):
        """Stream the changelist's current filtered list, all of it, in constant memory; or, as
        "bundle", every event the trail holds with its signed checkpoint (no filters)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if export_format == "bundle":
            return self._bundle(request)
        if export_format not in FORMATS:
            raise PermissionDenied
        return self._export(request, export_format)

    @reads_from_replica
    def _export(self, request, export_format):
        """The list as the changelist shows it, read where the changelist reads it; the bundle
        reads the primary, where the trail's leaves and checkpoint are."""
        try:
            queryset = self.get_changelist_instance(request).get_queryset(request)
        except IncorrectLookupParameters as exc:
            return self._cannot(request, f"Cannot export: {exc}")
        filters = dict(request.GET.items())
        lines = events_export_lines(events_iterate(queryset.select_related("source")), export_format)
        return self._download(request, export_format, filters, lines, f"audit-events-{{}}.{export_format}")

    def _bundle(self, request):
        """The offline verifier's input (auditlog.trail.bundle): the first line is read before
        the response starts, so a trail with no checkpoint yet is a message, not a broken file."""
        lines = bundle_lines()
        try:
            first = next(lines)
        except TrailError as exc:
            return self._cannot(request, f"Cannot export a bundle: {exc}")
        return self._download(
            request, "bundle", {}, itertools.chain([first], lines), "audit-trail-bundle-{}.jsonl"
        )

    def _cannot(self, request, message):
        self.message_user(request, message, messages.ERROR)
        return HttpResponseRedirect(reverse("admin:auditlog_actionlog_changelist"))

    def _download(self, request, export_format, filters, lines, filename):
        """Record the export as an event, then stream it as an attachment named with the time."""
        event_record_internal(
            action="auditlog.events.export",
            request=request,
            actor_id=request.user.get_username(),
            metadata={"format": export_format, "filters": filters},
        )
        content_type = CONTENT_TYPES["jsonl" if export_format == "bundle" else export_format]
        response = StreamingHttpResponse(lines, content_type=content_type)
        name = filename.format(f"{timezone.now():%Y%m%dT%H%M%SZ}")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
