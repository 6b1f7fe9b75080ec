from datetime import UTC, datetime, time, timedelta

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.utils import timezone

from auditlog.reading.selectors import event_distinct_values, occurred_since

MSG_BAD_DATE = "Use a date (2026-03-01) or a date-time (2026-03-01T14:00); times are UTC."


class IndexedValuesFilter(admin.SimpleListFilter):
    """Choices from a loose index scan: a few dozen seeks, never a scan of the table."""

    column = None

    def lookups(self, request, model_admin):
        values = event_distinct_values(self.column)
        if self.value() and self.value() not in values:
            values.append(self.value())  # a value with no events (yet) still filters, and shows
        return [(value, value) for value in values]

    def has_output(self):
        return True  # Django applies only filters with output: never drop a requested filter

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(**{self.column: value}) if value else queryset


class ActionFilter(IndexedValuesFilter):
    title = "action"
    parameter_name = column = "action"


class ActorTypeFilter(IndexedValuesFilter):
    title = "actor type"
    parameter_name = column = "actor_type"


class TargetTypeFilter(IndexedValuesFilter):
    title = "target type"
    parameter_name = column = "target_type"


def parse_moment(value: str, *, end_of_day: bool = False) -> datetime:
    """A date means its start (`since`) or the start of the next day (`until`); UTC unless given."""
    value = value.strip()
    try:
        if len(value) == 10:
            day = datetime.combine(datetime.fromisoformat(value).date(), time(), tzinfo=UTC)
            return day + timedelta(days=1) if end_of_day else day
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise IncorrectLookupParameters(MSG_BAD_DATE) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class OccurredRangeFilter(admin.ListFilter):
    """since / until on occurred_at (an index range), with presets and a small form."""

    title = "occurred (UTC)"
    template = "admin/auditlog/actionlog/range_filter.html"
    parameters = ("since", "until")
    presets = (
        ("Last 24 hours", timedelta(days=1)),
        ("Last 7 days", timedelta(days=7)),
        ("Last 30 days", timedelta(days=30)),
    )

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        for name in self.parameters:
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1]

    def has_output(self):
        return True

    def expected_parameters(self):
        return list(self.parameters)

    def queryset(self, request, queryset):
        if since := self.used_parameters.get("since"):
            queryset = occurred_since(queryset, parse_moment(since))
        if until := self.used_parameters.get("until"):
            queryset = queryset.filter(occurred_at__lt=parse_moment(until, end_of_day=True))
        return queryset

    def choices(self, changelist):
        now = timezone.now().replace(microsecond=0, tzinfo=None)
        yield {
            "selected": not self.used_parameters,
            "query_string": changelist.get_query_string(remove=self.parameters),
            "display": "Any time",
        }
        for label, span in self.presets:
            since = (now - span).isoformat()
            yield {
                "selected": False,
                "query_string": changelist.get_query_string({"since": since}, remove=["until"]),
                "display": label,
            }

    def form_values(self):
        return {name: self.used_parameters.get(name, "") for name in self.parameters}

    def hidden_parameters(self):
        """The other filters and the search, so applying a range keeps them."""
        return [
            (name, value)
            for name, values in self.request.GET.lists()
            if name not in (*self.parameters, "p")
            for value in values
        ]
