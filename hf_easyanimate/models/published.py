"""Transformer configs of the published EasyAnimate checkpoints, shipped as data (``published.json``, a few hundred
bytes each).

They let the memory planner and the parameter counts of docs/benchmarks.md build the real architectures on the
meta device offline, without any checkpoint downloaded. ``source`` says where each came from: a copy of the
Hub file, or a reconstruction (the Hub is not reachable from where this was written; a reconstruction follows the
original EasyAnimate code, its YAML and the base model the release started from, and says which values are
assumed). A checkpoint on disk or in the Hub cache always wins over these.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class PublishedConfig:
    name: str  # the Hub repo's name under alibaba-pai/
    version: str
    transformer: dict
    source: str

    @property
    def repo_id(self) -> str:
        return f"alibaba-pai/{self.name}"


def published_configs() -> dict[str, PublishedConfig]:
    """Every packaged config, by repo name."""
    with open(os.path.join(HERE, "published.json"), encoding="utf-8") as handle:
        raw = json.load(handle)
    def resolve(name: str) -> dict:  # "like": another entry's config, then this entry's changes
        entry = raw[name]
        base = resolve(entry["like"]) if "like" in entry else {}
        return {**base, **entry.get("transformer", {})}

    return {name: PublishedConfig(name, entry["version"], resolve(name), entry["source"]) for name, entry in raw.items()}


def find_published(model: str) -> PublishedConfig | None:
    """The packaged config whose repo name ends ``model`` (a Hub id, a local folder named after it, or a bare name)."""
    base = os.path.basename(os.path.normpath(model)) if model else ""
    return published_configs().get(base)
