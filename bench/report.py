"""Turns the throughput benchmark's windows into figures: per-step costs, medians over rounds, the table, the
ratios, issue 13's targets and the machine-readable last line."""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import time
from collections import Counter, defaultdict
from importlib import metadata
from typing import Any

from bench.noop.counting import HEALTH_CHECK
from bench.probes import spread


def diff_counts(
    after: dict[str, dict[str, int]], before: dict[str, dict[str, int]], *, only: str | None = None
) -> dict[str, dict[str, int]]:
    """Counts by label that changed between two readings (``only``: that label alone)."""
    changed = {}
    for label, values in after.items():
        if only is not None and label != only:
            continue
        old = before.get(label, {})
        delta = {key: value - old.get(key, 0) for key, value in values.items() if value - old.get(key, 0)}
        if delta:
            changed[label] = delta
    return changed


def _total(sql: dict[str, dict[str, int]], key: str) -> int:
    return sum(values.get(key, 0) for values in sql.values())


def per_step(sql: dict[str, dict[str, int]], redis: dict[str, float], *, runs: int, steps: int) -> dict[str, float]:
    """SQL statements and transactions (all, and the workers' alone: without the runs' starts, which this
    process sends), health checks, new connections and Redis commands per step, over ``runs`` finished runs of
    ``steps`` steps."""
    units = runs * steps
    if not units:
        return {}
    workers = {label: values for label, values in sql.items() if not label.endswith(" start")}
    return {
        "sql": _total(sql, "statements") / units,
        "sql_workers": _total(workers, "statements") / units,
        "transactions": _total(sql, "transactions") / units,
        "transactions_workers": _total(workers, "transactions") / units,
        "reads_workers": _total(workers, "reads") / units,
        "health_checks": _total(sql, HEALTH_CHECK) / units,
        "connections": _total(sql, "connections") / units,
        "redis": sum(redis.values()) / units,
    }


def _breakdown(windows: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """Per run, added up over every round: each task (by name) with its executions and SQL by verb; and
    Redis commands per step by command."""
    runs = sum(w["completed"] + w["failed"] for w in windows) or 1
    labels: defaultdict[str, Counter[str]] = defaultdict(Counter)
    redis: Counter[str] = Counter()
    for window in windows:
        for label, values in window["sql"].items():
            labels[_task_kind(label)].update(values)
        redis.update(window["redis"])
    tasks = {
        label: {key: round(value / runs, 2) for key, value in sorted(values.items())}
        for label, values in sorted(labels.items())
    }
    per_step_redis = {k: round(v / (runs * steps), 2) for k, v in redis.most_common() if v / (runs * steps) >= 0.01}
    return {"sql_per_run": tasks, "redis_per_step": per_step_redis}


def _task_kind(label: str) -> str:
    # saga.bench.noop3.step1, ...step2: one line for every step task of the saga.
    if label.startswith("saga.") and not label.endswith(".compensate"):
        return label.rsplit(".", 1)[0] + ".<step>"
    return label


def summarise(results: dict[str, Any], *, config: dict[str, Any], dbos_skipped: str) -> dict[str, Any]:
    by_variant: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for window in results["windows"]:
        by_variant[window["variant"]].append(window)
    variants: dict[str, Any] = {}
    for name, meta in results["variants"].items():
        windows = by_variant[name]
        figures = {
            "runs_per_s": [w["runs_per_s"] for w in windows],
            "steps_per_s": [w["steps_per_s"] for w in windows],
            **{p: [w["latency_ms"][p] for w in windows] for p in ("p50", "p95", "p99")},
            "solo_p50": [statistics.median(w["solo_ms"]) if w["solo_ms"] else float("nan") for w in windows],
            **{key: [w["per_step"].get(key, float("nan")) for w in windows] for key in _PER_STEP_KEYS},
            "rss_peak_mb": [w["rss_peak"] / 2**20 for w in windows],
            "harness_cpu_pct": [
                100 * w["harness_cpu_s"] / w["seconds"] if w["seconds"] else float("nan") for w in windows
            ],
            **{
                f"cpu_ms_{name}": [w.get("cpu_ms_per_run", {}).get(name, float("nan")) for w in windows]
                for name in ("workers", "postgres", "redis")
            },
        }
        variants[name] = {
            **meta,
            "figures": {key: spread(values) for key, values in figures.items()},
            "lost": sum(w["lost"] for w in windows),
            "failed": sum(w["failed"] for w in windows),
            **_breakdown(windows, meta["steps"]),
        }

    ratios: dict[str, float | None] = {}
    for steps in config["steps"]:
        ours, eager = f"saga{steps}", f"eager{steps}"
        for peer in ("chain", "chainpg", "dbos"):
            ratios[f"ours/{peer}{steps}"] = _ratio(variants, ours, f"{peer}{steps}", "runs_per_s")
        ratios[f"eager/dbos{steps}"] = _ratio(variants, eager, f"dbos{steps}", "runs_per_s")
        ratios[f"eager/ours{steps}"] = _ratio(variants, eager, ours, "runs_per_s")
        ratios[f"pg_cpu/chainpg{steps}"] = _ratio(variants, ours, f"chainpg{steps}", "cpu_ms_postgres")
        ratios[f"worker_cpu/chainpg{steps}"] = _ratio(variants, ours, f"chainpg{steps}", "cpu_ms_workers")
    rss = {
        system: {
            **values,
            "growth_pct": 100 * (values["at_end"] - values["after_warmup"]) / values["after_warmup"]
            if values["after_warmup"]
            else None,
            "runs": results["runs_per_system"][system],
        }
        for system, values in results["rss"].items()
    }
    headline = {
        **{key: _ratio(variants, *parts) for key, parts in _HEADLINE_RATIOS.items()},
        "sql_per_step": _median(variants, "saga3", "sql_workers"),
        "tx_per_step": _median(variants, "saga3", "transactions_workers"),
        "rss_growth": rss.get("ours", {}).get("growth_pct"),
    }
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine(),
        "config": config,
        "seconds": results.get("seconds"),
        "dbos": dbos_skipped or "measured",
        "variants": variants,
        "ratios": ratios,
        "headline": {key: headline[key] for key in HEADLINE},  # the last line's figures; None: skipped
        "targets": [
            {
                "figure": key,
                "bound": f"{op} {_format(key, bound)}",
                "value": headline[key],
                "met": _met(headline[key], op, bound),
            }
            for key, op, bound in TARGETS
        ],
        "last_line": _last_line(headline),
        "rss": rss,
        "complete": all(v["lost"] == 0 and v["failed"] == 0 for v in variants.values()),
    }


_PER_STEP_KEYS = (
    "sql", "sql_workers", "transactions", "transactions_workers", "reads_workers", "health_checks", "connections",
    "redis",
)  # fmt: skip


# The last line's ratios: (numerator variant, denominator variant, the figure whose medians they divide).
_HEADLINE_RATIOS = {
    "ours/chain3": ("saga3", "chain3", "runs_per_s"),
    "ours/chainpg3": ("saga3", "chainpg3", "runs_per_s"),
    "ours/dbos3": ("saga3", "dbos3", "runs_per_s"),
    "eager/dbos3": ("eager3", "dbos3", "runs_per_s"),
    "pg_cpu/chainpg3": ("saga3", "chainpg3", "cpu_ms_postgres"),
    "worker_cpu/chainpg3": ("saga3", "chainpg3", "cpu_ms_workers"),
}
# The last line's figures in its order; the others are saga3's workers' statements and transactions per step and
# our workers' RSS growth in percent.
HEADLINE = (
    "ours/chain3", "ours/chainpg3", "ours/dbos3", "eager/dbos3", "sql_per_step", "tx_per_step", "pg_cpu/chainpg3",
    "worker_cpu/chainpg3", "rss_growth",
)  # fmt: skip

# Issue 13's targets: (figure, comparison, bound). Its RSS bound is meant over 10,000 sagas (make bench-soak).
TARGETS = (
    ("ours/chainpg3", ">=", 0.9),
    ("ours/chain3", ">=", 0.7),
    ("tx_per_step", "<=", 1.0),
    ("pg_cpu/chainpg3", "<=", 1.5),
    ("worker_cpu/chainpg3", "<=", 1.3),
    ("eager/dbos3", ">=", 1.2),
    ("rss_growth", "<=", 10.0),
)


def _median(variants: dict[str, Any], name: str, figure: str) -> float | None:
    """The variant's median of ``figure`` over the rounds; None when it did not run or nothing was measured."""
    value = variants.get(name, {}).get("figures", {}).get(figure, {}).get("median")
    return None if value is None or math.isnan(value) else value


def _ratio(variants: dict[str, Any], name: str, other: str, figure: str) -> float | None:
    theirs = _median(variants, other, figure)
    ours = _median(variants, name, figure)
    return ours / theirs if ours is not None and theirs else None


def _met(value: float | None, op: str, bound: float) -> bool | None:
    if value is None:
        return None
    return value >= bound if op == ">=" else value <= bound


def _format(key: str, value: float | None) -> str:
    if value is None:
        return "skipped"
    return f"{value:.1f}%" if key == "rss_growth" else f"{value:.2f}"


def _last_line(headline: dict[str, float | None]) -> str:
    return "ratios: " + " ".join(f"{key}={_format(key, headline[key])}" for key in HEADLINE)


def machine() -> dict[str, Any]:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            memory = meminfo.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        redis_server = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        redis_server = ""
    return {
        "cpus": os.cpu_count(),
        "memory": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "redis_server": redis_server,
        **{p: version(p) for p in ("django", "celery", "kombu", "redis", "psycopg", "dbos")},
    }


def _fmt(figure: dict[str, float], digits: int = 1) -> str:
    if figure["median"] != figure["median"]:
        return "-"
    return f"{figure['median']:.{digits}f} [{figure['min']:.{digits}f}-{figure['max']:.{digits}f}]"


def print_summary(summary: dict[str, Any]) -> None:
    config = summary["config"]
    print()
    print(
        f"{config['runs']} runs x {config['rounds']} rounds per variant after {config['warmup']} warm-up runs, "
        f"{config['inflight']} in flight, {config['concurrency']} worker processes per system; "
        "median [min-max] over the rounds"
    )
    header = (
        f"{'variant':<10} {'runs/s':>20} {'steps/s':>22} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'solo ms':>8} {'SQL/step':>9} {'tx/step':>8} {'wSQL/step':>9} {'wtx/step':>8} {'conn/step':>9} "
        f"{'Redis/step':>10} {'RSS MB':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, variant in summary["variants"].items():
        f = variant["figures"]
        print(
            f"{name:<10} {_fmt(f['runs_per_s']):>20} {_fmt(f['steps_per_s']):>22} {f['p50']['median']:8.1f} "
            f"{f['p95']['median']:8.1f} {f['p99']['median']:8.1f} {f['solo_p50']['median']:8.1f} "
            f"{f['sql']['median']:9.2f} {f['transactions']['median']:8.2f} {f['sql_workers']['median']:9.2f} "
            f"{f['transactions_workers']['median']:8.2f} {f['connections']['median']:9.2f} "
            f"{f['redis']['median']:10.1f} "
            f"{f['rss_peak_mb']['median']:7.0f}"
            + (f"  LOST {variant['lost']} FAILED {variant['failed']}" if variant["lost"] or variant["failed"] else "")
        )
    if summary["dbos"] != "measured":
        print(f"dbos: {summary['dbos']}")
    print(
        "this process (submitting, polling, sampling), % of one core: "
        + ", ".join(
            f"{name} {v['figures']['harness_cpu_pct']['median']:.0f}" for name, v in summary["variants"].items()
        )
    )
    print("CPU per run, ms (its workers / every PostgreSQL process / the Redis server): " + ", ".join(
        f"{name} {f['cpu_ms_workers']['median']:.1f} / {f['cpu_ms_postgres']['median']:.1f} / "
        f"{f['cpu_ms_redis']['median']:.1f}"
        for name, f in ((name, v["figures"]) for name, v in summary["variants"].items())
    ))  # fmt: skip
    detailed = False
    for name, variant in summary["variants"].items():
        if not name.startswith(("saga", "eager", "dbos")):
            continue
        print(f"\n{name}: what each execution sends to PostgreSQL (averaged over every measured run)")
        for label, values in variant["sql_per_run"].items():
            times = values.get("tasks", 1) or 1
            print(
                f"  {label:<28} x{times:g} per run: {values.get('statements', 0) / times:.1f} statements, "
                f"{values.get('transactions', 0) / times:.1f} transactions that write and "
                f"{values.get('reads', 0) / times:.1f} plain reads each"
            )
            if not detailed or name.startswith("dbos"):
                shapes = sorted(((v, k[4:]) for k, v in values.items() if k.startswith("sql ")), reverse=True)
                for count, statement in shapes:
                    print(f"      {count / times:5.2f}  {statement}")
        detailed = detailed or name.startswith("saga")
        redis = ", ".join(f"{k} {v:g}" for k, v in variant["redis_per_step"].items())
        print(f"  Redis commands per step: {redis or 'none'}")
    for name in ("chain3", "chainpg3"):
        if name in summary["variants"]:
            redis = ", ".join(f"{k} {v:g}" for k, v in summary["variants"][name]["redis_per_step"].items())
            print(f"{name} Redis commands per step: {redis or 'none'}")
    print()
    for system, values in summary["rss"].items():
        growth = values["growth_pct"]
        print(
            f"worker RSS {system}: {values['after_warmup'] / 2**20:.0f} MB after warm-up -> "
            f"{values['at_end'] / 2**20:.0f} MB after {values['runs']} runs"
            + (f" ({growth:+.1f}%)" if growth is not None else "")
        )
    measured = {key: value for key, value in summary["ratios"].items() if value is not None}
    print("ratios (runs/s): " + ", ".join(f"{k}={v:.2f}" for k, v in measured.items() if "_cpu/" not in k))
    if cpu := ", ".join(f"{k}={v:.2f}" for k, v in measured.items() if "_cpu/" in k):
        print(f"ratios (CPU per run, our saga over the chain with a row per task): {cpu}")


def print_targets(summary: dict[str, Any]) -> None:
    """Issue 13's targets, each with the figure measured in this run and whether it is met."""
    print("issue 13 targets (this run, medians over the rounds):")
    for target in summary["targets"]:
        status = {True: "PASS", False: "MISS", None: "MISS (not measured)"}[target["met"]]
        value = _format(target["figure"], target["value"])
        note = ""
        if target["figure"] == "rss_growth" and "ours" in summary["rss"]:
            note = f"  (over {summary['rss']['ours']['runs']:,} runs; the bound is for 10,000: make bench-soak)"
        print(f"  {target['figure']:<20} {target['bound']:<8} {value:>8}  {status}{note}")


def last_line(summary: dict[str, Any]) -> str:
    return str(summary["last_line"])
