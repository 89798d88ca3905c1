"""The monitoring how-to's files name only metrics that exist, and its page
shows the alert rules file as it is and lists every metric."""

import json
import re
from pathlib import Path

import yaml

from django_tasks_q.metrics import QueueCollector, WorkerMetrics

HOW_TO = Path(__file__).resolve().parent.parent / "docs" / "how-to"
PAGE = HOW_TO / "monitoring.md"
ALERTS = HOW_TO / "alerts.yml"
DASHBOARD = HOW_TO / "grafana-dashboard.json"
# The series a histogram (or gauge histogram) and a counter are exposed as.
SUFFIXES = ("_bucket", "_count", "_sum", "_gcount", "_gsum", "_created")


def metric_names() -> set[str]:
    """Every metric family this package exposes, by its exposed name."""
    names = {family.name for family in QueueCollector().describe()}
    for family in WorkerMetrics("default").registry.collect():
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def series_named(text: str) -> set[str]:
    return set(re.findall(r"\btaskq_[a-z_]+", text))


def family_of(series: str, names: set[str]) -> str | None:
    if series in names:
        return series
    for suffix in SUFFIXES:
        if series.endswith(suffix) and series.removesuffix(suffix) in names:
            return series.removesuffix(suffix)
    return None


def test_the_alert_rules_and_dashboard_name_only_real_metrics():
    names = metric_names()
    rules = yaml.safe_load(ALERTS.read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    expressions += [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    expressions += [variable.get("definition", "") for variable in dashboard["templating"]["list"]]
    used = set().union(*(series_named(expression) for expression in expressions))
    assert used, "no metric found in the rules and dashboard"
    unknown = sorted(series for series in used if family_of(series, names) is None)
    assert not unknown, f"not metrics of django_tasks_q.metrics: {unknown}"


def test_the_page_lists_every_metric_and_shows_the_rules_file():
    page = PAGE.read_text()
    listed = set(re.findall(r"^\| `(taskq_[a-z_]+)` \|", page, flags=re.MULTILINE))
    assert listed == metric_names()
    # The page includes the file itself (pymdownx.snippets): one copy.
    assert '--8<-- "docs/how-to/alerts.yml"' in page


def test_the_dashboards_panels_have_unique_ids_and_positions():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
