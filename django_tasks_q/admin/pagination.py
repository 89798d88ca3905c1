"""A paginator for the history table, which may hold millions of rows.

Django's paginator runs ``SELECT COUNT(*)`` for every page, and on PostgreSQL
that reads the whole table (or index): seconds, at a few million rows, on each
page load. Past ``exact_below`` rows the PostgreSQL planner's estimate is as
good for paging: it comes from the table statistics, in a millisecond.
"""

from functools import cached_property
from typing import Any, cast

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet

from ..backends.database.figures import planner_estimate


class EstimatedCountPaginator(Paginator):
    exact_below = 10_000

    @cached_property
    def count(self) -> int:
        queryset = cast("QuerySet[Any]", self.object_list)  # the admin pages querysets
        if connections[queryset.db].vendor == "postgresql":
            estimate = planner_estimate(queryset)
            if estimate >= self.exact_below:
                return estimate
        # Small (or not PostgreSQL): counting is cheap enough, and exact.
        return queryset.count()
