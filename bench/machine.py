"""Where and when a benchmark ran, and where its results go (shared by bench/).

Each benchmark writes `bench/results/<name>.json` (the numbers and the machine) and `<name>.md`
(the same numbers as tables), both through `write_results`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine() -> dict[str, object]:
    """Date (UTC), usable cores, CPU, Python and torch versions, load average at the start."""
    import torch

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "load_average": os.getloadavg(),
    }


def write_results(out: Path, stem: str, report: dict, markdown: str) -> None:
    """`out/<stem>.json` (indented, ending in a newline) and `out/<stem>.md`, each atomically.

    Numpy scalars that JSON cannot take (float32, int64) are written as floats.
    """
    from facerep.files import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / f"{stem}.json", "w", encoding="utf-8") as f:
        f.write(json.dumps(report, indent=2, default=float) + "\n")
    with atomic_write(out / f"{stem}.md", "w", encoding="utf-8") as f:
        f.write(markdown)


def code_version() -> dict[str, object]:
    """The commit measured, and the files in facerep/ that differed from it."""
    repo = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "facerep").splitlines()  # "XY path" per line
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip() or None,
        "facerep_uncommitted": [line[3:] for line in changed],
    }


def describe_code(code: dict) -> str:
    """`commit abc1234`, plus the uncommitted facerep files, for a results header."""
    changed = code["facerep_uncommitted"]
    dirty = f" plus uncommitted changes ({', '.join(changed)})" if changed else ""
    return f"commit {code['commit']}{dirty}"
