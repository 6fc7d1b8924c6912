"""metrics.jsonl of a RESeL run: one JSON row per seed per evaluation, append-only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from optim4rl.checkpoint import atomic_write_bytes


def _json_value(x):
    x = np.asarray(x)
    return x.item() if x.ndim == 0 else x.tolist()


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None


class MetricsLog:
    """Append-only metrics.jsonl; on resume, rows after the checkpoint's step are dropped."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        self.rows: list[dict] = []
        if resume_step is not None and path.exists():
            keep = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
            self.rows = [r for r in keep if r.get("step", 0) <= resume_step]
            atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in self.rows).encode())
        elif path.exists():
            path.unlink()

    def write(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
