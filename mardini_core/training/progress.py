"""What a user watches and plots: a text progress line on stderr and a JSONL log (one object per logged step),
from step values that stay on the device between the steps that read them."""
from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

from ..atomic import atomic_path
from ..errors import OutputError


class StepValues:
    """The latest step's losses and gradient norm kept on the device, with those of the first step whose
    values were not finite: a step never waits for the GPU; `read` syncs once, at log and checkpoint steps."""

    def __init__(self, names: list[str], device: torch.device):
        self.names = names
        self.latest = torch.zeros(len(names), dtype=torch.float64, device=device)
        self.bad = torch.zeros_like(self.latest)
        self.first_bad = torch.full((1,), -1.0, dtype=torch.float64, device=device)  # step index, -1 = none yet

    def add(self, step: int, values: dict) -> None:
        device = self.latest.device
        self.latest = torch.stack([torch.as_tensor(values[n], dtype=torch.float64, device=device) for n in self.names])
        new_bad = (self.first_bad < 0) & ~torch.isfinite(self.latest).all()
        self.first_bad = torch.where(new_bad, step, self.first_bad)
        self.bad = torch.where(new_bad, self.latest, self.bad)

    def read(self) -> tuple[dict[str, float], int | None, dict[str, float]]:
        """(latest values, the first step index whose values were not finite or None, that step's values)."""
        n = len(self.names)
        flat = torch.cat([self.latest, self.bad, self.first_bad]).tolist()
        first = int(flat[-1])
        return dict(zip(self.names, flat[:n])), None if first < 0 else first, dict(zip(self.names, flat[n : 2 * n]))


class RunLog:
    """Appends to `<run>/log.jsonl`; on resume, drops entries past the restored step so the log matches the weights."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        if path.is_symlink():  # appending would write wherever the link points
            raise OutputError(f"{path} is a link; a run writes only its own files: remove the link or choose a new --out")
        if path.exists():
            kept, torn = [], 0
            for line in path.read_text(errors="replace").splitlines():
                record = _parse(line)
                if record is None:
                    torn += bool(line.strip())
                elif record.get("step", 0) <= resume_step:
                    kept.append(line)
            if torn:  # a run killed mid-write leaves a torn last line: drop it, keep the rest
                warnings.warn(f"dropped {torn} unreadable line(s) of {path} (a run killed while writing it)", stacklevel=2)
            with atomic_path(path) as tmp:
                tmp.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        with os.fdopen(fd, "a") as f:  # never through a link planted after the start
            f.write(json.dumps(record) + "\n")


class ProgressLine:
    """`[#####.....] step 120/500 loss 0.4321 lr 1.2e-04 85 frames/s eta 1m20s` on stderr."""

    def __init__(self, total: int, width: int = 24, stream=sys.stderr):
        self.total, self.width, self.stream = total, width, stream
        self.tty = stream.isatty()
        self.start = time.time()

    def update(self, step: int, loss: float, lr: float, fps: float, done_this_run: int) -> None:
        filled = self.width * step // self.total
        rate = done_this_run / max(1e-9, time.time() - self.start)
        eta = (self.total - step) / rate if rate > 0 else 0.0
        text = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] step {step}/{self.total} loss {loss:.4f} "
            f"lr {lr:.2e} {fps:.1f} frames/s eta {int(eta // 60)}m{int(eta % 60):02d}s"
        )
        print(("\r" + text) if self.tty else text, end="" if self.tty else "\n", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=self.stream)


def _parse(line: str) -> dict | None:
    """One log record, or None for a torn or foreign line (not a JSON object with an integer step)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or isinstance(record.get("step", 0), bool) or not isinstance(record.get("step", 0), int):
        return None
    return record
