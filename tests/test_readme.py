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


def test_readme_links_point_at_files():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert len(links) > 8
    missing = [t for t in links if "://" not in t and not (ROOT / t).exists()]
    assert not missing


def test_readme_commands_parse():
    """Every `cup4soil ...` command the README shows is one the parser accepts."""
    import shlex

    from cup4soil.cli.main import _join_negative_values, build_parser

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.replace("\\\n", " ") for b in re.findall(r"```bash\n(.*?)```", text, re.S)]
    spans = [" ".join(s.split()) for s in re.findall(r"`(cup4soil [^`]+)`", text)]
    commands = [line.strip() for b in blocks for line in b.splitlines()] + spans
    commands = [c[c.index("cup4soil "):] for c in commands if "cup4soil " in c
                and not c.startswith(("import", "pip install -e"))]
    commands = [c for c in commands if re.match(r"cup4soil [a-z]+ ", c + " ")]
    assert len(commands) >= 6
    parser = build_parser()
    for command in commands:
        args = shlex.split(command)[1:]
        if args[0] in ("info", "search", "composite", "train", "predict", "demo"):
            parser.parse_args(_join_negative_values(args))


def test_readme_says_what_downloads():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"dlr-europe.{0,40}downloads", text, re.S)
    assert "CUP4SOIL_DLR_THRESHOLD" in text
