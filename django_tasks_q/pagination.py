"""A paginator for the history table, which may hold millions of rows.

Django's paginator runs ``SELECT COUNT(*)`` for every page, and on PostgreSQL
that reads the whole table (or index): seconds, at a few million rows, on each
page load. Past ``exact_below`` rows the PostgreSQL planner's estimate is as
good for paging: it comes from the table statistics, in a millisecond.
"""

import json
from functools import cached_property

from django.core.paginator import Paginator
from django.db import connections


class EstimatedCountPaginator(Paginator):
    exact_below = 10_000

    @cached_property
    def count(self):
        queryset = self.object_list
        if connections[queryset.db].vendor == "postgresql":
            estimate = planner_estimate(queryset)
            if estimate >= self.exact_below:
                return estimate
        # Small (or not PostgreSQL): counting is cheap enough, and exact.
        return queryset.count()


def planner_estimate(queryset) -> int:
    """How many rows PostgreSQL's planner expects ``queryset`` to return."""
    sql, params = queryset.order_by().query.get_compiler(using=queryset.db).as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
