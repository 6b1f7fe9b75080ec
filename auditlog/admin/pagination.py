from django.core.paginator import Paginator
from django.utils.functional import cached_property

from auditlog.reading.selectors import event_count_estimate

COUNT_BOUND = 10_000


class BoundedCountPaginator(Paginator):
    """Never counts a million rows for a page.

    Unfiltered on PostgreSQL, the count is the planner's estimate; otherwise it counts at most
    COUNT_BOUND + 1 rows (one index range). Pages stop at COUNT_BOUND rows deep, where OFFSET
    is still cheap: past that, filters narrow the list (and the API's cursors go anywhere).
    """

    @cached_property
    def estimate(self) -> int | None:
        return event_count_estimate() if not self.object_list.query.where else None

    @cached_property
    def count(self) -> int:
        if self.estimate is not None and self.estimate > COUNT_BOUND:
            return self.estimate
        return self.object_list.order_by()[: COUNT_BOUND + 1].count()

    @cached_property
    def num_pages(self) -> int:
        return max(1, -(-min(self.count, COUNT_BOUND) // self.per_page))

    @cached_property
    def count_label(self) -> str:
        if self.estimate is not None and self.count == self.estimate:
            return f"about {self.count:,}"
        return f"more than {COUNT_BOUND:,}" if self.count > COUNT_BOUND else f"{self.count:,}"
