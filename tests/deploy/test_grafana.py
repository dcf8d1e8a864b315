"""deploy/grafana: the dashboard reads only metrics the three processes expose (scraped from their
real ``/metrics``), and so do the alert rules; Grafana is provisioned with the datasource the
dashboard names, from the folders the compose file mounts."""

from __future__ import annotations

import json
import re

import aiohttp

from shared.settings import Settings
from tests.helpers import (
    DASHBOARD,
    DEPLOY,
    FUNNEL_PANEL,
    dashboard_targets,
    exposed_names,
    metric_names,
    serving_processes,
)

PROMETHEUS_OWN = {"up"}  # added by Prometheus to every scrape


def alert_expressions() -> list[str]:
    text = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    return re.findall(r"expr: (.*?)\n\s+for:", text, re.DOTALL)


async def test_dashboard_and_alerts_read_only_metrics_the_processes_expose(settings: Settings) -> None:
    async with serving_processes(settings) as processes, aiohttp.ClientSession() as s:
        exposed: set[str] = set()
        for base in (processes.edge, processes.api, processes.worker):
            async with s.get(f"{base}/metrics") as r:
                assert r.status == 200
                exposed |= exposed_names(await r.text())
    assert {"surgegate_queue_joined_total", "surgegate_booking_seconds_bucket",
            "surgegate_booking_queue_depth", "surgegate_dependency_up"} <= exposed  # fmt: skip
    known = exposed | PROMETHEUS_OWN
    read = {(title, ref): metric_names(expr) for title, ref, expr in dashboard_targets()}
    assert all(read.values()), [k for k, v in read.items() if not v]  # the scanner found a name in each
    unknown = {key: names - known for key, names in read.items() if names - known}
    assert unknown == {}
    alerts = alert_expressions()
    assert len(alerts) >= 8
    assert {expr: metric_names(expr) - known for expr in alerts if metric_names(expr) - known} == {}


def test_metric_name_scanner_finds_names_and_only_names() -> None:
    """Negative control of the test above: an invented name is found, label names, label values,
    functions, groupings and keywords are not."""
    expr = 'sum by (le, event) (rate(surgegate_nope_bucket{event=~"a|b", le!="x"}[5m])) > bool 0'
    assert metric_names(expr) == {"surgegate_nope_bucket"}
    expr = "max by (event) (a_gauge) > 0 and on (event) b_gauge unless on (event) increase(c_total[2m]) > 0"
    assert metric_names(expr) == {"a_gauge", "b_gauge", "c_total"}
    assert metric_names('up{job=~"surgegate-.*"} == 0 or absent(up{job="w"})') == {"up"}


def test_dashboard_shows_what_an_operator_needs() -> None:
    titles = {title for title, _, _ in dashboard_targets()}
    assert FUNNEL_PANEL in titles
    queries = " ".join(expr for _, _, expr in dashboard_targets())
    for metric in ("surgegate_queue_joined_total", "surgegate_admitted_total", "surgegate_booking_attempts_total",
                   "surgegate_queue_wait_seconds_bucket", "surgegate_token_verify_total",
                   "surgegate_booking_seconds_bucket", "surgegate_booking_queue_depth",
                   "surgegate_notifications_backlog", "surgegate_notifications_oldest_due_age_seconds",
                   "surgegate_notifications_total", "surgegate_eligibility_decisions_total",
                   "surgegate_eligibility_reasons_total", "surgegate_eligibility_errors_total",
                   "surgegate_eligibility_shadow_total"):  # fmt: skip
        assert metric in queries


def test_grafana_is_provisioned_with_the_dashboard_and_its_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    uids |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    uids.add(dashboard["templating"]["list"][0]["datasource"]["uid"])
    datasources = (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert uids == {"prometheus"} and re.search(r"^\s+uid: prometheus$", datasources, re.MULTILINE)
    assert "url: http://prometheus:9090" in datasources  # the compose service
    providers = (DEPLOY / "grafana" / "provisioning" / "dashboards" / "surgegate.yml").read_text()
    assert "path: /var/lib/grafana/dashboards" in providers
    compose = (DEPLOY / "compose.yaml").read_text()
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in compose
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in compose
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
