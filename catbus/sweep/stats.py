"""Summary statistics of a sweep: per setting, n, and per score either the mean +- sample std
with a 95% confidence interval of the mean (numbers) or the rate of ``True`` with a 95% Wilson
score interval (booleans: ``success``, ``collided``).

The interval of a mean is ``mean +- t * std / sqrt(n)`` with ``t`` the two-sided 95% critical
value of Student's t with ``n - 1`` degrees of freedom, from the table below (df 1-30 exact to 3
decimals, then 40, 60, 120; between table entries the next smaller df is used, which is
conservative), and the normal value 1.960 beyond 120. scipy is not needed. n = 1 has no
interval.

A rate's interval is Wilson's, not the normal approximation ``p +- z sqrt(p(1-p)/n)``: that one
collapses to a width of 0 at 0/n and n/n (10 successes in 10 episodes would claim certainty) and
leaves [0, 1] near them, which are exactly the rates a benchmark's success scores have; Wilson's
stays inside [0, 1] and is honest there (10/10: [0.72, 1]).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

#: Two-sided 95% critical values of Student's t by degrees of freedom.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
         17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
         25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021,
         60: 2.000, 120: 1.980}
Z_975 = 1.960


def t_critical(df: int) -> float:
    if df < 1:
        return float("nan")
    if df > 120:
        return Z_975
    return T_975[max(k for k in T_975 if k <= df)]


def describe(values: Sequence[float]) -> dict[str, float]:
    """n, mean, std (sample, n - 1), and the 95% interval (lo, hi) of the mean."""
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    half = t_critical(n - 1) * std / math.sqrt(n) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "std": std, "ci_lo": mean - half, "ci_hi": mean + half}


def wilson(successes: int, n: int, z: float = Z_975) -> tuple[float, float]:
    """The Wilson score interval of a rate, ``successes`` of ``n`` (95% with the default ``z``);
    (nan, nan) for n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    scale = 1 + z * z / n
    center = (p + z * z / (2 * n)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def describe_rate(values: Sequence[bool]) -> dict[str, Any]:
    """n, the number of ``True``, their rate and its 95% Wilson interval (lo, hi)."""
    n, successes = len(values), sum(1 for v in values if v)
    lo, hi = wilson(successes, n)
    return {"kind": "rate", "n": n, "successes": successes,
            "rate": successes / n if n else float("nan"), "ci_lo": lo, "ci_hi": hi}


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summarize(rows: Sequence[Mapping[str, Any]], score_keys: Sequence[str]) -> list[dict]:
    """Per setting (rows grouped by their ``setting`` slug, in first-seen order): ``setting``,
    ``n`` episodes, ``failed``, and per score of its ok rows: for a score that is a boolean in
    every ok row that has it, :func:`describe_rate` (``kind`` ``"rate"``); else, over its finite
    numbers, :func:`describe` (``kind`` ``"mean"``)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get("setting", "default"), []).append(row)
    out = []
    for name, group in groups.items():
        ok = [r for r in group if r.get("status") == "ok"]
        entry: dict[str, Any] = {"setting": name, "n": len(group), "failed": len(group) - len(ok),
                                 "scores": {}}
        for key in score_keys:
            present = [r[key] for r in ok if r.get(key) is not None]
            if present and all(isinstance(v, bool) for v in present):
                entry["scores"][key] = describe_rate(present)
                continue
            values = [float(v) for v in present if _numeric(v)]
            if values:
                entry["scores"][key] = {"kind": "mean", **describe(values)}
        out.append(entry)
    return out


def _num(x: float) -> str:
    return "-" if x != x else f"{x:.4g}"


def _cells(d: Mapping[str, Any] | None) -> tuple[str, str]:
    """The ``mean ± std`` and ``95% CI`` cells of one score."""
    if d is None:
        return "-", "-"
    if d.get("kind") == "rate":
        return (f"{_num(d['rate'])} ({d['successes']}/{d['n']} true)",
                f"[{_num(d['ci_lo'])}, {_num(d['ci_hi'])}]")
    return (f"{_num(d['mean'])} ± {_num(d['std'])}",
            "-" if d["n"] < 2 else f"[{_num(d['ci_lo'])}, {_num(d['ci_hi'])}]")


def format_summary(summary: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a text table: one line per setting and score (a boolean score shows its
    rate of true, e.g. ``0.8 (8/10 true)``, and its Wilson interval)."""
    header = ("setting", "n", "failed", "score", "mean ± std | rate", "95% CI")
    lines = [header]
    for entry in summary:
        first = True
        scores = entry["scores"] or {"-": None}
        for key, d in scores.items():
            cells = (entry["setting"] if first else "", str(entry["n"]) if first else "",
                     str(entry["failed"]) if first else "", key, *_cells(d))
            lines.append(cells)
            first = False
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)
