"""The scorecard chapter: every chapter's claims, paper vs ours, in one place.

It trains nothing: verdicts come from the runs the chapters stored
(:mod:`landmark_study.claims`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ChapterParams, register_chapter_params, spec
from . import register_grid


@register_chapter_params("scorecard")
@dataclass(frozen=True)
class ScorecardParams(ChapterParams):
    chapters: tuple[str, ...] = spec((), help="chapters to include; empty = every chapter with a claims file")


@register_grid("scorecard")
def grid(p: ScorecardParams) -> list:
    return []
