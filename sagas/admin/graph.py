"""The saga graph on a run's page: steps as nodes coloured by status, dependencies, compensation edges (SVG)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from sagas.models import SagaStepRun
from sagas.states import StepStatus

if TYPE_CHECKING:
    from sagas.definitions import Saga

FILL: dict[str, str] = {
    StepStatus.PENDING: "#e5e7eb",
    StepStatus.RUNNING: "#fde68a",
    StepStatus.WAITING: "#fef3c7",
    StepStatus.SUCCEEDED: "#bbf7d0",
    StepStatus.FAILED: "#fca5a5",
    StepStatus.SKIPPED: "#f3f4f6",
    StepStatus.COMPENSATING: "#fed7aa",
    StepStatus.COMPENSATED: "#bfdbfe",
    StepStatus.COMPENSATION_FAILED: "#ef4444",
    StepStatus.RESOLVED: "#ddd6fe",
}
# What the compensation of a step shows, by the step's status.
UNDO: dict[str, tuple[str, str]] = {
    StepStatus.COMPENSATING: ("undoing", FILL[StepStatus.COMPENSATING]),
    StepStatus.COMPENSATED: ("undone", FILL[StepStatus.COMPENSATED]),
    StepStatus.COMPENSATION_FAILED: ("undo failed", FILL[StepStatus.COMPENSATION_FAILED]),
    StepStatus.RESOLVED: ("resolved by hand", FILL[StepStatus.RESOLVED]),
}
NODE_W, NODE_H, UNDO_H = 170, 40, 26
COL, ROW, MARGIN = 215, 120, 20


def _levels(names: list[str], dependencies: dict[str, frozenset[str]]) -> dict[str, int]:
    levels: dict[str, int] = {}
    for name in names:  # dependencies come first in declaration order
        levels[name] = 1 + max((levels[dep] for dep in dependencies.get(name, ()) if dep in levels), default=-1)
    return levels


def saga_graph_svg(saga: type[Saga] | None, steps: list[SagaStepRun]) -> SafeString:
    """Steps left to right by dependency depth; a dashed edge down to each compensation and its state."""
    ordered = sorted(steps, key=lambda s: s.index)
    names = [s.name for s in ordered]
    if saga is not None:
        dependencies = saga.dependencies()
        compensable = {s.name for s in saga.steps if s.compensation is not None}
    else:  # the saga's code is gone: draw the recorded steps as a sequence
        dependencies = {name: frozenset(names[i - 1 : i]) for i, name in enumerate(names)}
        compensable = set()
    levels = _levels(names, dependencies)
    rows: dict[int, int] = {}
    position = {}
    for name in names:
        level = levels[name]
        position[name] = (MARGIN + level * COL, MARGIN + rows.get(level, 0) * ROW)
        rows[level] = rows.get(level, 0) + 1
    width = MARGIN * 2 + (max(levels.values(), default=0) + 1) * COL
    height = MARGIN * 2 + max(rows.values(), default=1) * ROW
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="saga-graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Saga graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker></defs>',
    ]
    for name in names:
        x, y = position[name]
        for dep in sorted(dependencies.get(name, ())):
            if dep in position:
                dx, dy = position[dep]
                parts.append(
                    f'<line x1="{dx + NODE_W}" y1="{dy + NODE_H / 2}" x2="{x - 4}" y2="{y + NODE_H / 2}" '
                    'stroke="#6b7280" stroke-width="1.5" marker-end="url(#arrow)"/>'
                )
    for step in ordered:
        x, y = position[step.name]
        fill = FILL.get(step.status, "#ffffff")
        parts.append(
            f'<g class="step" data-step="{escape(step.name)}" data-status="{escape(step.status)}">'
            f'<title>{escape(step.name)}: {escape(step.status)}, {step.attempts} attempt(s)</title>'
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{fill}" stroke="#374151"/>'
            f'<text x="{x + 8}" y="{y + 16}" font-size="12" font-weight="bold" fill="#111827">'
            f"{escape(_short(step.name))}</text>"
            f'<text x="{x + 8}" y="{y + 32}" font-size="11" fill="#374151">{escape(step.status)}</text></g>'
        )
        if step.name in compensable:
            label, undo_fill = UNDO.get(step.status, ("undo", "#ffffff"))
            uy = y + NODE_H + 30
            parts.append(
                f'<line x1="{x + NODE_W / 2}" y1="{y + NODE_H}" x2="{x + NODE_W / 2}" y2="{uy - 2}" '
                'stroke="#9ca3af" stroke-width="1.5" stroke-dasharray="4 3" marker-end="url(#arrow)"/>'
                f'<g class="compensation" data-step="{escape(step.name)}">'
                f'<rect x="{x + 15}" y="{uy}" width="{NODE_W - 30}" height="{UNDO_H}" rx="4" fill="{undo_fill}" '
                'stroke="#9ca3af" stroke-dasharray="4 3"/>'
                f'<text x="{x + 23}" y="{uy + 17}" font-size="11" fill="#111827">↶ {escape(label)}</text></g>'
            )
    parts.append("</svg>")
    # Safe: every interpolated text above went through escape().
    return mark_safe("".join(parts))


def _short(name: str, limit: int = 22) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
