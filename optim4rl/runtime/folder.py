"""One run folder for every command: config.json, an append-only metrics.jsonl, a checkpoint.

The rules, the same for `python -m resel`, `meta_train train` and the driver's other users:
- a fresh run into a folder that already holds a run (a checkpoint or metrics) is refused
  (`UsageError`: the folder would mix two runs); `--resume` continues it;
- `--resume` needs a checkpoint, and the config it is given must equal the saved config.json
  (except the dotted keys the command lets a resume change, such as the total steps);
- on resume, the metric rows the checkpoint has not seen are dropped, so the file equals that of
  an uninterrupted run;
- in a multi-process run only process 0 writes; every process checks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from optim4rl.container import atomic_write_bytes
from optim4rl.runtime.errors import UsageError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.msgpack"


def differences(
    saved: Any, now: Any, skip: frozenset[str] = frozenset(), at: str = ""
) -> list[str]:
    """'key: saved (saved) vs now (now)' for every differing leaf of two JSON trees; dotted keys
    in `skip` (e.g. "config.total_steps") are not compared."""
    if at in skip:
        return []
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for k in sorted(set(saved) | set(now), key=str):
            out += differences(saved.get(k), now.get(k), skip, f"{at}.{k}" if at else str(k))
        return out
    return [] if saved == now else [f"{at or 'config'}: {saved!r} (saved) vs {now!r} (now)"]


class RunFolder:
    """A run's folder; see the module docstring for its rules. `write=False` (processes other
    than 0) checks the same things and writes nothing."""

    def __init__(
        self,
        path: str | os.PathLike,
        config: dict[str, Any],
        *,
        resume: bool = False,
        may_change: Iterable[str] = (),
        write: bool = True,
        command: str | None = None,
    ):
        self.path = Path(path)
        self.config = config
        self.resume = resume
        self.write = write
        self.command = command
        self.checkpoint = self.path / CHECKPOINT
        self.metrics = self.path / METRICS
        if resume:
            if not self.checkpoint.is_file():
                raise UsageError(f"--resume: no checkpoint in {self.path} to resume from")
            if (self.path / CONFIG).is_file():
                saved = json.loads((self.path / CONFIG).read_text())
                now = json.loads(json.dumps(config))  # as it would be written
                diff = differences(saved, now, frozenset(may_change))
                if diff:
                    raise UsageError(
                        f"--resume: {self.path} holds a run of another config: {'; '.join(diff)}"
                    )
        elif self.checkpoint.exists() or self.metrics.exists():
            raise UsageError(
                f"{self.path} already holds a run; add --resume to continue it, or choose "
                "another --out (or delete that folder) to start a new one"
            )

    def start(self, keep: Callable[[dict], bool] | None = None) -> list[dict]:
        """Write config.json; on resume keep the metric rows for which `keep(row)` and return
        them (a fresh run starts an empty metrics.jsonl and returns [])."""
        if not self.write:
            return []
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path / CONFIG, json.dumps(self.config, indent=1).encode())
        rows: list[dict] = []
        if self.resume and self.metrics.exists():
            lines = [s for s in self.metrics.read_text().splitlines() if s.strip()]
            rows = [r for r in map(json.loads, lines) if keep is None or keep(r)]
        atomic_write_bytes(self.metrics, "".join(json.dumps(r) + "\n" for r in rows).encode())
        return rows

    def log(self, row: dict) -> None:
        """Append one row to metrics.jsonl."""
        if self.write:
            with open(self.metrics, "a") as f:
                f.write(json.dumps(row) + "\n")

    def resume_command(self) -> str:
        """The command that continues this run (`--resume` added once)."""
        cmd = self.command or "the same command"
        return cmd if "--resume" in cmd.split() else f"{cmd} --resume"
