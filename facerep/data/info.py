"""Summaries of a prepared dataset, for `facerep info` and for people reading a run's inputs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from facerep.data.store import open_dataset


def describe_dataset(root: str | Path) -> dict:
    """Counts of a prepared dataset as one JSON-ready dict.

    Keys: `faces`, `images` (inputs that gave a face), `identities`, `failures` (inputs that gave
    none, `FAILED_STATUSES`), `failures_by_reason`, `duplicates` (copies of an input stored
    once), `ignored` (names that are not images'), `images_per_identity` (min/median/max),
    `splits`, `size` (crop side), `detector`, `stages` (faces per detection-cascade stage;
    `unrecorded` for faces prepared before the cascade), `path`.
    """
    data = open_dataset(root)
    outcomes = data.outcomes()
    per_identity = Counter(
        f.identity for f in data.files if f.status == "ok" and f.identity is not None
    )
    failures = data.failures()
    counts = np.array(sorted(per_identity.values()))
    return {
        "path": str(data.root),
        "faces": len(data),
        "images": outcomes["ok"],
        "identities": len(per_identity),
        "failures": sum(failures.values()),
        "failures_by_reason": failures,
        "duplicates": outcomes["duplicate"],
        "ignored": outcomes["ignored"],
        "images_per_identity": {
            "min": int(counts.min()),
            "median": float(np.median(counts)),
            "max": int(counts.max()),
        }
        if per_identity
        else None,
        "splits": dict(Counter(s for s in data.splits if s is not None)),
        "size": data.size,
        "detector": data.meta.get("detector"),
        "stages": dict(Counter(s or "unrecorded" for s in data.stages)),
    }
