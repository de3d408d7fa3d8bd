"""Whether a monitoring result calls for a retrain, and whether the cooldown allows one now.

Pure functions of the report's facts and of times, so every rule is tested without a server.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any


@dataclass
class RetrainDecision:
    """What the monitor concluded and did: recommended, triggered, and why (or why not)."""

    recommended: bool
    causes: list[str]
    triggered: bool = False
    blocked_by: str | None = None
    flow_run: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recommend_retrain(
    drift_share: float | None,
    drifted: dict[str, float],
    limit: float,
    recall: float | None = None,
    precision: float | None = None,
    recall_floor: float = 0.0,
    precision_floor: float = 0.0,
    r2: float | None = None,
    r2_floor: float | None = None,
) -> RetrainDecision:
    """Recommend a retrain when the drifted-feature share reaches `limit` or quality breaches a floor."""
    causes = []
    if drift_share is not None and drift_share >= limit:
        columns = ", ".join(f"{c} ({s:.2f})" for c, s in sorted(drifted.items(), key=lambda i: -i[1]))
        causes.append(f"data drift: {drift_share:.0%} of features drifted (limit {limit:.0%}): {columns}")
    if recall is not None and recall < recall_floor:
        causes.append(f"recall {recall:.3f} is below the floor {recall_floor:g}")
    if precision is not None and precision < precision_floor:
        causes.append(f"precision {precision:.3f} is below the floor {precision_floor:g}")
    if r2 is not None and r2_floor is not None and r2 < r2_floor:
        causes.append(f"R² {r2:.3f} is below the floor {r2_floor:g}")
    return RetrainDecision(recommended=bool(causes), causes=causes)


def cooldown_block(last_triggered: datetime | None, now: datetime, hours: float) -> str | None:
    """Why a new retrain must wait (the previous one is too recent), or None when it may start."""
    if last_triggered is None or now - last_triggered >= timedelta(hours=hours):
        return None
    until = last_triggered + timedelta(hours=hours)
    return (
        f"cooldown: a retrain was triggered at {last_triggered.isoformat(timespec='seconds')}; "
        f"the next may start after {until.isoformat(timespec='seconds')} ({hours:g} h cooldown)"
    )
