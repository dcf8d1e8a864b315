"""deploy/prometheus: `promtool check` of the rules and the config, `promtool test rules` of every
alert, and every alert named in at least one test case that expects it to fire.

promtool comes with Debian's ``prometheus`` package (.ci/run installs it). Without it these tests
are skipped, except under CI=true, where its absence fails them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import DEPLOY, dashboard_targets

PROMTOOL = shutil.which("promtool")
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and os.environ.get("CI") != "true",
    reason="promtool is not installed (Debian's prometheus package; .ci/run installs it, CI fails without it)",
)


def promtool(*args: str | Path) -> str:
    assert PROMTOOL is not None, "promtool is missing: apt-get install prometheus"
    done = subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_promtool
def test_rules_and_config_pass_promtool_check() -> None:
    assert "SUCCESS" in promtool("check", "rules", RULES)
    assert "SUCCESS" in promtool("check", "config", DEPLOY / "prometheus" / "prometheus.yml")


@needs_promtool
def test_alert_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", RULE_TESTS)


@needs_promtool
def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    """Negative control: the unit tests bite. AdmissionsStalled written the obvious way (admitted
    rate == 0) never fires for an event that admitted nobody yet: no admitted series exists."""
    broken = RULES.read_text().replace(
        "unless on (event) sum by (event) (increase(surgegate_admitted_total[2m])) > 0",
        "and on (event) sum by (event) (increase(surgegate_admitted_total[2m])) == 0",
    )
    assert broken != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yml")
    done = subprocess.run([str(PROMTOOL), "test", "rules", str(tmp_path / "alerts_test.yml")],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "alertname: AdmissionsStalled" in done.stdout + done.stderr


@needs_promtool
def test_eligibility_errors_alert_misses_a_first_error_without_its_second_clause(tmp_path: Path) -> None:
    """Negative control: EligibilityRulesErring as the plain increase() only, never fires for a rule
    version whose first error is its series' first sample (a labelled counter appears at 1)."""
    clause = (" or sum by (event, rule_version) (surgegate_eligibility_errors_total"
              " unless surgegate_eligibility_errors_total offset 5m) > 0")  # fmt: skip
    broken = RULES.read_text().replace(clause, "")
    assert broken != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yml")
    done = subprocess.run([str(PROMTOOL), "test", "rules", str(tmp_path / "alerts_test.yml")],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "alertname: EligibilityRulesErring" in done.stdout + done.stderr


def test_every_alert_has_a_case_where_it_fires() -> None:
    alerts = set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.MULTILINE))
    assert len(alerts) >= 8
    tested = RULE_TESTS.read_text()
    # a case expecting alerts has `alertname: X` followed by a non-empty exp_alerts list
    firing = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", tested))
    assert alerts - firing == set()
    quiet = set(re.findall(r"alertname: (\w+), exp_alerts: \[\]", tested))
    assert alerts - quiet == set(), "each alert also needs a case where it must not fire"


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query of the Grafana dashboard (as a recording rule)."""
    rules = "groups:\n  - name: dashboard\n    rules:\n" + "".join(
        f"      - record: dashboard:query_{i}\n        expr: {json.dumps(expr)}\n"
        for i, (_, _, expr) in enumerate(dashboard_targets())
    )
    (tmp_path / "dashboard.yml").write_text(rules)
    assert "SUCCESS" in promtool("check", "rules", tmp_path / "dashboard.yml")
