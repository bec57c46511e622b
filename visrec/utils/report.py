"""Plain-text tables for terminal reports."""
from __future__ import annotations


def format_table(title: str, rows: list[tuple[str, object]]) -> str:
    """Two-column table: metric name and value (floats with 4 decimals)."""
    cells = [(str(k), f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in rows]
    left = max([len(k) for k, _ in cells] + [6])
    right = max([len(v) for _, v in cells] + [5])
    rule = "+" + "-" * (left + 2) + "+" + "-" * (right + 2) + "+"
    lines = [title, rule, f"| {'metric'.ljust(left)} | {'value'.rjust(right)} |", rule]
    lines += [f"| {k.ljust(left)} | {v.rjust(right)} |" for k, v in cells]
    lines.append(rule)
    return "\n".join(lines)
