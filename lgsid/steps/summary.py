"""What a step did: :class:`StepSummary`, printed as a one-screen summary at the step's end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lgsid.storage import WriteResult


@dataclass
class StepSummary:
    """What a step did, printed as a one-screen summary at its end.

    Attributes:
        step: Step name.
        tables: Delta writes (table, version, rows).
        seconds: Wall time of the step.
        metrics: Headline numbers worth showing (losses, recall, counts).
        notes: Free-text lines (where the report is, what was skipped and why).
    """

    step: str
    tables: list[WriteResult] = field(default_factory=list)
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"== lgsid {self.step}: done in {self.seconds:.1f}s"]
        if self.tables:
            w = max(len(t.table) for t in self.tables)
            lines.append(f"   {'table'.ljust(w)}  {'rows':>10}  version")
            for t in self.tables:
                lines.append(f"   {t.table.ljust(w)}  {t.rows:>10,}  v{t.version}")
        for k, v in self.metrics.items():
            lines.append(f"   {k}: {v:.4g}" if isinstance(v, float) else f"   {k}: {v}")
        lines.extend(f"   {n}" for n in self.notes)
        return "\n".join(lines)
