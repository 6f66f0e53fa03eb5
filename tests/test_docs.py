"""What ships speaks to users: short README and cards, no workflow words, no machine's folders.

The README and the model cards are read by people deciding whether to use a world; a history of
experiments belongs in docs/experiments/, dated. Nothing shipped may name a folder of the machine
it was made on (it means nothing elsewhere and leaks a user's layout), and CI runs exactly the
test command the README gives.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CARDS = sorted((ROOT / "dreamgym" / "worlds").glob("*/MODEL_CARD.md"))
MAX_LINES = 200

ABSOLUTE_PATH = re.compile(
    r"(?<![\w.:/~-])(/(root|home|work|tmp|Users|mnt|scratch|data|srv|opt)/|[A-Z]:\\\\?[\w])"
)
"""A folder of some machine: a POSIX path under a user or scratch root, or a Windows drive."""
PROCESS_WORD = re.compile(r"\bsessions?\b", re.IGNORECASE)
"""How the work was organised: experiments are named by their date or by what changed."""


def _shipped_text_files() -> list[Path]:
    """Docs, cards, bundled JSON, examples, benchmarks, recipes and the package's own source."""
    files = [README, *CARDS]
    files += sorted((ROOT / "docs").rglob("*.md"))
    files += sorted((ROOT / "dreamgym" / "worlds").rglob("*.json"))
    files += sorted((ROOT / "dreamgym").rglob("*.py"))
    for folder in ("examples", "benchmarks", "experiments", "scripts"):
        files += sorted(
            p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".md", ".sh", ".json"}
        )
    return [p for p in files if p.is_file()]


def test_readme_and_cards_are_short() -> None:
    assert CARDS, "no bundled model cards found"
    long = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in (README, *CARDS)
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not long, f"over {MAX_LINES} lines (move history to docs/experiments/): {long}"


@pytest.mark.parametrize("pattern", [ABSOLUTE_PATH, PROCESS_WORD], ids=["abs-path", "process-word"])
def test_nothing_shipped_names_a_machine_folder_or_the_workflow(pattern: re.Pattern[str]) -> None:
    hits = []
    for path in _shipped_text_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if match := pattern.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)!r}")
    assert not hits, "\n".join(hits[:40])


def test_the_patterns_catch_what_they_are_for() -> None:
    assert ABSOLUTE_PATH.search('"data": "/root/dreamgym-data/doom-random"')
    assert ABSOLUTE_PATH.search("--data /home/ana/car")
    assert not ABSOLUTE_PATH.search("see https://worldmodels.github.io/root/x and data/car")
    assert PROCESS_WORD.search("measured in Session 11")
    assert not PROCESS_WORD.search("a sessional note")


def test_ci_runs_the_readme_test_command() -> None:
    readme = README.read_text()
    section = readme[readme.index("Run the tests") :]
    command = re.search(r"```bash\n(.+?)\n```", section, re.DOTALL).group(1).strip()
    assert "pytest" in command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in ci, f".ci/run does not run the README's test command: {command}"
