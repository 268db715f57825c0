"""Copy the committed chd68 leaderboard table into README.md between its marker comments.

    python benchmarks/update_readme.py

The README quotes results only through this script, so its numbers are always those that
`kdbench report` wrote to results/chd68/leaderboard.md.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = "<!-- chd68-leaderboard:start -->"
END = "<!-- chd68-leaderboard:end -->"


def leaderboard_table(path: Path) -> str:
    """Return the first Markdown table of ``path`` (the aggregated leaderboard)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    last = first
    while last + 1 < len(lines) and lines[last + 1].startswith("|"):
        last += 1
    return "\n".join(lines[first : last + 1])


def provenance_line(path: Path) -> str:
    """Return one sentence naming the command and hardware behind the results."""
    record = json.loads(path.read_text(encoding="utf-8"))
    minutes = record["wall_seconds_this_invocation"] / 60
    return (
        f"Produced by `{record['command']}` on {record['cpu']} ({record['cpu_count']} cores, "
        f"{record['torch_threads']} torch threads, torch {record['torch']}, no GPU) in "
        f"{minutes:.0f} minutes, then published with `{record['published']}`."
    )


def main() -> None:
    results = ROOT / "results" / "chd68"
    block = "\n\n".join(
        [
            START,
            leaderboard_table(results / "leaderboard.md"),
            provenance_line(results / "provenance.json"),
            END,
        ]
    )
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        sys.exit(f"{readme}: markers {START} and {END} not found; add them where the table goes")
    readme.write_text(pattern.sub(lambda _: block, text), encoding="utf-8")


if __name__ == "__main__":
    main()
