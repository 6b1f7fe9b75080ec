"""The activity chart above the events' list: events per time bucket for the list's filters,
failures apart, each bar a link to its bucket's list. Server-rendered SVG, no script.

Cheap at any size: one count per bucket and one of its failures, each an index range (the
list's own filter's index, or the failures' partial index) counted up to CAP rows, so a chart
costs at most 2 x BARS x CAP index entries whatever the table holds. A bar that reaches the cap
says "more than 10,000" rather than a number it did not count.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.http import urlencode

from auditlog.admin.filters import parse_moment
from auditlog.reading.selectors import occurred_since

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
    events: int  # up to CAP + 1
    failures: int
    href: str

    @property
    def label(self) -> str:
        def count(value):
            return f"more than {CAP:,}" if value > CAP else f"{value:,}"

        return (
            f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC: {count(self.events)} events, "
            f"{count(self.failures)} failures"
        )


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    bucket: timedelta
    since: datetime
    until: datetime

    def svg_bars(self) -> list[dict]:
        """Each bar's geometry: x, width, the events' and the failures' heights (the tallest bar
        fills the height; a capped bar counts as the cap)."""
        tallest = max((min(bar.events, CAP + 1) for bar in self.bars), default=0) or 1
        width = WIDTH / max(len(self.bars), 1)
        shapes = []
        for i, bar in enumerate(self.bars):
            events = round(HEIGHT * min(bar.events, CAP + 1) / tallest, 1)
            failures = round(HEIGHT * min(bar.failures, CAP + 1) / tallest, 1)
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
        events = sum(min(bar.events, CAP + 1) for bar in self.bars)
        failures = sum(min(bar.failures, CAP + 1) for bar in self.bars)
        return (
            f"Events per {_duration(self.bucket)} from {self.since:%Y-%m-%d %H:%M} to "
            f"{self.until:%Y-%m-%d %H:%M} UTC: {events:,} events and {failures:,} failures"
            f" in {len(self.bars)} bars"
            + (" (some bars counted only up to 10,000)" if any(bar.events > CAP for bar in self.bars) else "")
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
    bars = []
    while start < until:
        end = start + bucket
        in_bucket = occurred_since(queryset, start).filter(occurred_at__lt=end)
        query = urlencode(
            {**others, "since": f"{start:%Y-%m-%dT%H:%M}", "until": f"{end:%Y-%m-%dT%H:%M}"}, doseq=True
        )
        bars.append(
            Bar(
                start,
                end,
                in_bucket.order_by()[: CAP + 1].count(),
                in_bucket.filter(outcome="failure").order_by()[: CAP + 1].count(),
                f"?{query}",
            )
        )
        start = end
    return Chart(bars, bucket, since, until)


def _floor(moment: datetime, bucket: timedelta) -> datetime:
    """The bucket's boundary at or before `moment` (UTC midnight-aligned)."""
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket >= timedelta(days=1):
        return midnight
    return midnight + bucket * ((moment - midnight) // bucket)
