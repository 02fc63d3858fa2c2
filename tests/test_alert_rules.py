"""The shipped alerting rules and dashboard: promtool checks and unit-tests the rules, and every alert and panel
reads metrics the framework exports and links a runbook section that exists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from sagas import collectors, metrics

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "sagas-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "sagas-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "sagas-dashboard.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
METRIC = re.compile(r"\bsagas_[a-z_]+")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not installed: apt-get install prometheus (scripts/setup-machine.sh does it)")
    return subprocess.run([tool, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout


def test_the_rules_fire_in_their_unit_tests_for_the_conditions_named() -> None:
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def exported_metrics() -> set[str]:
    """Every series name the framework's /metrics can serve: the counters and histograms with their suffixes,
    and the gauges its collectors read at scrape time."""
    names = set()
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            base = metric._name  # prometheus-client keeps the name without its suffixes here
            names |= {base, f"{base}_total", f"{base}_bucket", f"{base}_count", f"{base}_sum"}
    for collector in (
        collectors.AwaitingPersonCollector(),
        collectors.StuckRunsCollector(),
        collectors.OutboxBacklogCollector(),
        collectors.CircuitWaitCollector(),
        collectors.ReaperCollector(),
        collectors.BreakerStateCollector(),
    ):
        names |= {family.name for family in collector.describe()}
    return names


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_every_alert_reads_exported_metrics_and_links_a_runbook_section_that_exists() -> None:
    exported = exported_metrics()
    anchors = {
        re.sub(r"[^a-z0-9 _-]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in rules():
        used = set(METRIC.findall(rule["expr"]))
        assert used, rule["alert"]  # an alert that reads no metric of ours could never fire on what we export
        assert used <= exported, (rule["alert"], used - exported)
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert ROOT / page == RUNBOOK, rule["alert"]
        assert anchor in anchors, rule["alert"]


def test_every_dashboard_panel_reads_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_metrics()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used = set(METRIC.findall(target["expr"]))
            assert used, panel["title"]
            assert used <= exported, (panel["title"], used - exported)
