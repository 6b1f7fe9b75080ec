"""The activity chart above the events' list: events per time bucket for the list's filters,
failures apart, each bar a link to its bucket's list. Server-rendered SVG, no script.

Bounded at any size: per bucket, one query reads the bucket's first CAP + 1 events in
occurred_at order from an index alone (the list's own filter's index, which an ordered scan
leaves there) and another its first CAP + 1 failures (the failures' partial index). Up to CAP
each is an exact count. Past it, an estimate: those rows cover the bucket from its start to the
last one's time, so the bucket holds about rows x bucket / covered. Such a bar says "about" and
"estimated" in its label; its link lists the exact events. A chart reads at most
2 x BARS x (CAP + 1) index entries, whatever the table holds.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max
from django.utils import timezone
from django.utils.http import urlencode

from auditlog.admin.filters import parse_moment
from auditlog.models import ActionLog

CAP = 10_000
DEFAULT_SPAN = timedelta(hours=24)
# (longest range, bucket): at most about 48 bars whatever the range
BUCKETS = (
    (timedelta(hours=4), timedelta(minutes=5)),
    (timedelta(days=2), timedelta(hours=1)),
    (timedelta(days=8), timedelta(hours=4)),
    (timedelta(days=62), timedelta(days=1)),
    (timedelta(days=400), timedelta(days=7)),
)
WIDTH, HEIGHT = 960, 80


@dataclass(frozen=True)
class Bar:
    start: datetime
    end: datetime
    events: int  # counted, or estimated when `estimated`
    failures: int
    href: str
    estimated: bool = False

    @property
    def label(self) -> str:
        about = "about " if self.estimated else ""
        return (
            f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC: {about}{self.events:,} events, "
            f"{about}{self.failures:,} failures"
            + (f" (estimated from the first {CAP + 1:,})" if self.estimated else "")
        )


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    bucket: timedelta
    since: datetime
    until: datetime

    def svg_bars(self) -> list[dict]:
        """Each bar's geometry: x, width, the events' and the failures' heights (the tallest bar
        fills the height)."""
        tallest = max((bar.events for bar in self.bars), default=0) or 1
        width = WIDTH / max(len(self.bars), 1)
        shapes = []
        for i, bar in enumerate(self.bars):
            events = round(HEIGHT * bar.events / tallest, 1)
            failures = round(HEIGHT * bar.failures / tallest, 1)
            shapes.append(
                {
                    "bar": bar,
                    "x": round(i * width, 1),
                    "width": round(max(width - 1, 1), 1),
                    "y": round(HEIGHT - events, 1),
                    "height": events,
                    "failures_y": round(HEIGHT - failures, 1),
                    "failures": failures,
                }
            )
        return shapes

    @property
    def summary(self) -> str:
        """The chart in words, for screen readers (aria-label)."""
        events = sum(bar.events for bar in self.bars)
        failures = sum(bar.failures for bar in self.bars)
        estimated = sum(bar.estimated for bar in self.bars)
        about = "about " if estimated else ""
        return (
            f"Events per {_duration(self.bucket)} from {self.since:%Y-%m-%d %H:%M} to "
            f"{self.until:%Y-%m-%d %H:%M} UTC: {about}{events:,} events and {about}{failures:,} failures"
            f" in {len(self.bars)} bars"
            + (f" ({estimated} of them estimated from their first {CAP + 1:,} events)" if estimated else "")
        )

    @property
    def bucket_label(self) -> str:
        return _duration(self.bucket)


def _duration(bucket: timedelta) -> str:
    if bucket >= timedelta(days=1):
        days = bucket.days
        return "day" if days == 1 else "week" if days == 7 else f"{days} days"
    hours, minutes = divmod(int(bucket.total_seconds()) // 60, 60)
    return ("hour" if hours == 1 else f"{hours} hours") if not minutes else f"{minutes} minutes"


def activity_chart(request, queryset) -> Chart:
    """The chart of `queryset` (the list's filtered events) over the since/until range, or the
    last 24 hours without one."""
    now = timezone.now()
    until = parse_moment(request.GET["until"], end_of_day=True) if request.GET.get("until") else now
    since = parse_moment(request.GET["since"]) if request.GET.get("since") else until - DEFAULT_SPAN
    span = max(until - since, timedelta(minutes=1))
    bucket = next((size for longest, size in BUCKETS if span <= longest), None)
    if bucket is None:  # longer than BUCKETS reach: as many weeks as fit about 60 bars
        bucket = timedelta(days=7 * -(-span.days // (7 * 60)))
    start = _floor(since, bucket)
    others = {name: values for name, values in request.GET.lists() if name not in ("since", "until", "p")}
    unbounded = _without_time_bounds(queryset)
    bars = []
    while start < until:
        end = start + bucket
        in_bucket = unbounded.filter(occurred_at__gte=start, occurred_at__lt=end)
        query = urlencode(
            {**others, "since": f"{start:%Y-%m-%dT%H:%M}", "until": f"{end:%Y-%m-%dT%H:%M}"}, doseq=True
        )
        bars.append(_bar(in_bucket, start, end, f"?{query}"))
        start = end
    if not bars:  # until before since: nothing to draw
        return Chart(bars, bucket, since, until)
    return Chart(bars, bucket, bars[0].start, bars[-1].end)  # whole buckets, as counted


def _without_time_bounds(queryset):
    """The list's queryset without its own time bounds (the `since` and `until` filters, and
    the received_at bound `since` implies): each bar counts its whole bucket, as its link lists
    it, and only its own bounds range the index it reads."""
    fields = {ActionLog._meta.get_field("occurred_at"), ActionLog._meta.get_field("received_at")}
    queryset = queryset._chain()
    where = queryset.query.where
    if where.connector == "AND" and not where.negated:
        where.children = [
            child
            for child in where.children
            if getattr(getattr(child, "lhs", None), "target", None) not in fields
        ]
    return queryset


def _field_of(condition):
    return getattr(getattr(condition, "lhs", None), "target", None)


def _bar(in_bucket, start: datetime, end: datetime, href: str) -> Bar:
    """The bucket's events and failures, each counted up to CAP and estimated beyond."""
    events, estimated = _count(in_bucket, start, end)
    failures, failures_estimated = _count(in_bucket.filter(outcome="failure"), start, end)
    return Bar(start, end, events, min(failures, events), href, estimated or failures_estimated)


def _count(queryset, start: datetime, end: datetime) -> tuple[int, bool]:
    """The first CAP + 1 rows in occurred_at order, from an index alone (the filter's, or the
    failures' partial one): their number, exact up to CAP; past it, an estimate from the share
    of the bucket they cover."""
    sample = queryset.order_by("occurred_at").values("occurred_at")[: CAP + 1]
    found = sample.aggregate(rows=Count("occurred_at"), last=Max("occurred_at"))
    if found["rows"] <= CAP:
        return found["rows"], False
    covered = max(found["last"] - start, timedelta(microseconds=1)) / (end - start)
    return max(round(found["rows"] / covered), found["rows"]), True


def _floor(moment: datetime, bucket: timedelta) -> datetime:
    """The bucket's boundary at or before `moment` (UTC midnight-aligned)."""
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket >= timedelta(days=1):
        return midnight
    return midnight + bucket * ((moment - midnight) // bucket)
