"""Sparsity patterns ("8:16", "u50") and the checks of the pruning config values that name patterns or sets.

Torch-free, so the Snakefile checks every pattern when it parses the config, before any job starts (the schema
checks the spelling; 0 < N < M and 0 < P < 100 need the values: a pattern that prunes nothing, 4:4 or u0, is refused
like one that cannot be built).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from lmscalpel.config import check_problems

_NM = re.compile(r"^(\d+)[:_-](\d+)$")
_UNSTRUCTURED = re.compile(r"^(?:u|unstructured[:_-]?)(\d+(?:\.\d+)?)%?$")


@dataclass(frozen=True)
class Pattern:
    """Either N kept out of every M (``n``, ``m``) or unstructured with ``sparsity`` (fraction removed)."""

    n: int | None = None
    m: int | None = None
    sparsity: float | None = None

    def __post_init__(self):
        if self.is_unstructured:
            if not 0.0 < self.sparsity < 1.0:
                raise ValueError(f"unstructured sparsity must lie in (0, 1) (0 prunes nothing), got {self.sparsity}")
        elif self.n is None or self.m is None or not 0 < self.n < self.m:
            raise ValueError(f"N:M pattern needs 0 < N < M (N = M keeps every entry: no pruning), "
                             f"got {self.n}:{self.m}")

    @property
    def is_unstructured(self) -> bool:
        return self.sparsity is not None

    @property
    def density(self) -> float:
        return 1.0 - self.sparsity if self.is_unstructured else self.n / self.m

    @property
    def slug(self) -> str:
        """File-name form: ``8-16`` or ``u50``."""
        if self.is_unstructured:
            return f"u{_percent(self.sparsity)}"
        return f"{self.n}-{self.m}"

    @property
    def label(self) -> str:
        if self.is_unstructured:
            return f"unstructured {_percent(self.sparsity)}%"
        return f"{self.n}:{self.m}"

    def keep_count(self, width: int) -> int:
        """Entries kept per row of ``width`` (unstructured: floor(width * (1 - sparsity)))."""
        if self.is_unstructured:
            return int(width * (1.0 - self.sparsity) + 1e-9)
        full, rest = divmod(width, self.m)
        return full * self.n + min(rest, self.n)


def _percent(sparsity: float) -> str:
    value = round(sparsity * 100, 6)
    return str(int(value)) if value == int(value) else str(value)


def parse_pattern(text: str | Pattern) -> Pattern:
    """Parse ``"8:16"``/``"8-16"`` (N kept of M) or ``"u50"``/``"unstructured:50"``/``"unstructured-50%"``."""
    if isinstance(text, Pattern):
        return text
    spec = str(text).strip().lower()
    if match := _NM.match(spec):
        return Pattern(n=int(match.group(1)), m=int(match.group(2)))
    if match := _UNSTRUCTURED.match(spec):
        return Pattern(sparsity=float(match.group(1)) / 100.0)
    raise ValueError(f"unknown sparsity pattern {text!r}; expected 'N:M' (e.g. '8:16') or 'uP' (e.g. 'u50')")


PATTERN_KEYS = ("patterns", "criteria_patterns", "mitigation_patterns", "weight_patterns", "chat_patterns",
                "per_kind_pattern")


def pattern_problems(patterns: Mapping[str, str | list[str] | None]) -> list[str]:
    """One line per impossible pattern (``"3:2"``: N > M, ``"0:4"``, ``"u100"``, or one that prunes nothing:
    ``"4:4"``, ``"u0"``) of ``{config key: pattern or list of patterns}``, naming its key."""
    problems = []
    for key, values in patterns.items():
        for value in [values] if isinstance(values, str) else values or []:
            try:
                parse_pattern(value)
            except ValueError as err:
                problems.append(f"config key {key}: {value!r}: {err}")
    return problems


def check_patterns(patterns: Mapping[str, str | list[str] | None]) -> None:
    """Raise :class:`ConfigError` listing :func:`pattern_problems` (config keys outside ``pruning`` that name one)."""
    check_problems(pattern_problems(patterns))


def check_pruning_values(cfg: Mapping) -> None:
    """Raise :class:`ConfigError` naming the key when a pattern is impossible (:func:`pattern_problems`) or a grid
    target names no set of ``target_sets``."""
    problems = pattern_problems({f"pruning.{key}": cfg.get(key) for key in PATTERN_KEYS}
                                | {"pruning.zero_shot.patterns": cfg.get("zero_shot", {}).get("patterns")})
    unknown = [name for name in cfg.get("grid_targets", []) if name not in cfg.get("target_sets", {})]
    if unknown:
        problems.append(f"config key pruning.grid_targets: {unknown} are not keys of pruning.target_sets "
                        f"({sorted(cfg.get('target_sets', {}))})")
    check_problems(problems)
