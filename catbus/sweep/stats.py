"""Summary statistics of a sweep: per setting, n, mean +- sample std and a 95% confidence
interval of the mean per numeric score.

The interval is ``mean +- t * std / sqrt(n)`` with ``t`` the two-sided 95% critical value of
Student's t with ``n - 1`` degrees of freedom, from the table below (df 1-30 exact to 3 decimals,
then 40, 60, 120; between table entries the next smaller df is used, which is conservative), and
the normal value 1.960 beyond 120. scipy is not needed. n = 1 has no interval.
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


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summarize(rows: Sequence[Mapping[str, Any]], score_keys: Sequence[str]) -> list[dict]:
    """Per setting (rows grouped by their ``setting`` slug, in first-seen order): ``setting``,
    ``n`` episodes, ``failed``, and per numeric score the :func:`describe` of its ok rows."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get("setting", "default"), []).append(row)
    out = []
    for name, group in groups.items():
        ok = [r for r in group if r.get("status") == "ok"]
        entry: dict[str, Any] = {"setting": name, "n": len(group), "failed": len(group) - len(ok),
                                 "scores": {}}
        for key in score_keys:
            values = [float(r[key]) for r in ok if _numeric(r.get(key))]
            if values:
                entry["scores"][key] = describe(values)
        out.append(entry)
    return out


def _num(x: float) -> str:
    return "-" if x != x else f"{x:.4g}"


def format_summary(summary: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a text table: one line per setting and score."""
    header = ("setting", "n", "failed", "score", "mean ± std", "95% CI")
    lines = [header]
    for entry in summary:
        first = True
        scores = entry["scores"] or {"-": None}
        for key, d in scores.items():
            cells = (entry["setting"] if first else "", str(entry["n"]) if first else "",
                     str(entry["failed"]) if first else "", key,
                     "-" if d is None else f"{_num(d['mean'])} ± {_num(d['std'])}",
                     "-" if d is None or d["n"] < 2 else
                     f"[{_num(d['ci_lo'])}, {_num(d['ci_hi'])}]")
            lines.append(cells)
            first = False
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)
