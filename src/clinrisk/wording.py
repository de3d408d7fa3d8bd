"""Counts and line lists in messages: "1 row", "2 rows", "line 7", "lines 7-9, 12"."""

from __future__ import annotations

from collections.abc import Sequence


def count_of(n: int, singular: str, plural: str | None = None) -> str:
    """`n` with the noun in the right number: count_of(1, "row") == "1 row"."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def _runs(numbers: Sequence[int]) -> list[str]:
    """Sorted numbers with runs of three or more written as a range: [1, 2, 3, 7] -> ["1-3", "7"]."""
    out: list[str] = []
    values = sorted(set(numbers))
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[i - 1] + 1:
            run = values[start:i]
            out += [f"{run[0]}-{run[-1]}"] if len(run) >= 3 else [str(v) for v in run]
            start = i
    return out


def line_list(lines: Sequence[int]) -> str:
    """ "line 7", "lines 7, 9" or "lines 7-12"."""
    parts = _runs(lines)
    single = len(parts) == 1 and "-" not in parts[0]
    return ("line " if single else "lines ") + ", ".join(parts)


def rows_at(count: int, lines: Sequence[int]) -> str:
    """How many rows, and where: "1 row; line 7" or "40 rows; first at lines 7-11"."""
    where = line_list(lines)
    if count > len(set(lines)):
        where = "first at " + where
    return f"{count_of(count, 'row')}; {where}"
