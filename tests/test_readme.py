"""The README's quick-start commands are the ones CI and new users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    body = text[re.search(r"^## Quick start$", text, re.M).end():]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", body, re.S)][:2]


def test_readme_opens_with_demo_and_test_commands():
    demo, tests = _quickstart_commands()
    assert "cup4soil demo" in demo and demo.startswith("pip install")
    assert "pytest" in tests and tests.startswith("pip install")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _quickstart_commands()[1] in ci
