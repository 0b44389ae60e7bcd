"""The documentation site builds strictly, and its generated pages follow the code.

``mkdocs build --strict`` fails on a broken link, a missing page in the nav, a broken
anchor or a reference mkdocstrings cannot resolve (never with ``-q``: it hides the warnings
strict counts); one build serves every check here.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cup4soil.cli.main import build_parser
from cup4soil.errors import Cup4SoilError

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SHARED = ROOT.parent / "shared" / "data"


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config),
         "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = _mkdocs(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def _text(site: Path, page: str) -> str:
    return html.unescape((site / page / "index.html").read_text(encoding="utf-8"))


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subs[0].choices) if subs else {}


def test_site_builds_strictly_with_every_page_in_the_nav(site):
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.Loader)
    assert config["strict"] is True

    def pages(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from (pages(value) if isinstance(value, list) else [value])

    in_nav = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert on_disk == in_nav  # no orphan page, no page missing
    for page in in_nav:
        built = site / (page[:-3] if page != "index.md" else "")
        assert (built / "index.html").is_file() if page != "index.md" else \
            (site / "index.html").is_file()


def test_broken_link_or_reference_fails_the_build(tmp_path):
    """The strictness the site relies on: a page with a broken link, and one with an API
    reference that does not resolve, each fail a build with this configuration."""
    base = (ROOT / "mkdocs.yml").read_text().split("\nnav:")[0]
    base = re.sub(r"\nhooks:\n(  - .*\n)+", "\n", base)
    base = re.sub(r"\nexclude_docs: \|\n(  .*\n)+", "\n", base)
    for name, text in {"link": "See [nothing](missing.md).",
                       "reference": "See [load][cup4soil.no_such_function]."}.items():
        docs = tmp_path / name / "docs"
        docs.mkdir(parents=True)
        (docs / "index.md").write_text(f"# Test\n\n{text}\n")
        path = tmp_path / name / "mkdocs.yml"
        path.write_text(base.replace("docs_dir: docs", f"docs_dir: {docs}"))
        done = _mkdocs(path, tmp_path / name / "site")
        assert done.returncode != 0, name
        assert ("missing.md" if name == "link" else "cup4soil.no_such_function") in done.stderr


def test_cli_reference_is_the_parser(site):
    text = _text(site, "reference/cli")
    parser = build_parser()
    commands = _subcommands(parser)
    assert {"demo", "composite", "train", "predict", "info", "search"} <= set(commands)

    def check(p: argparse.ArgumentParser, prefix: str) -> int:
        n = 0
        for name, sub in _subcommands(p).items():
            assert f"{prefix} {name}" in text
            n += 1
            for action in sub._actions:
                for flag in action.option_strings:
                    assert flag in text, (name, flag)
                if isinstance(action, argparse._SubParsersAction):
                    n += check(sub, f"{prefix} {name}")  # nested groups: openeo export
                elif not action.option_strings and action.dest != "help":
                    assert action.dest in text, (name, action.dest)
        return n

    assert check(parser, "cup4soil") >= len(commands)


def test_error_reference_lists_every_error_class_with_what_it_means(site):
    from cup4soil import errors

    text = _text(site, "reference/errors")
    classes = [c for c in vars(errors).values() if isinstance(c, type)
               and issubclass(c, Cup4SoilError) and c.__module__ == errors.__name__]
    assert len(classes) > 10
    for cls in classes:
        assert cls.__doc__, f"{cls.__name__} has no docstring for the error reference"
        assert re.search(rf"^{cls.__name__}¶?$", text, re.M) or f">{cls.__name__}<" in \
            (site / "reference/errors/index.html").read_text(), cls.__name__
        first = " ".join(cls.__doc__.split("\n\n")[0].split())
        assert first.replace("``", "")[:40] in " ".join(text.split()), cls.__name__


def test_api_reference_documents_the_public_namespaces(site):
    page = (site / "reference/api/index.html").read_text(encoding="utf-8")
    for ident in ("cup4soil.sources.search.search", "cup4soil.cube.load.load_s2",
                  "cup4soil.scmap.composite", "cup4soil.models.train",
                  "cup4soil.products.store.write", "cup4soil.runtime.cluster.connect",
                  "cup4soil.sample.make_catalog", "cup4soil.scmap.masks.valid_pixel_count"):
        assert f'id="{ident}"' in page, ident


def test_samples_template_is_read_as_the_page_says():
    """The template CSV is what `models.train` reads: a target, x/y in the given CRS."""
    from cup4soil.models.samples import read_samples

    s = read_samples(DOCS / "samples-template.csv", crs="EPSG:32633", coords=None)
    assert s.crs == "EPSG:32633" and s.x is not None and len(s.table) == 3
    assert s.table["SOC_target"].dtype.kind == "f"
    page = (DOCS / "getting-started" / "own-samples.md").read_text()
    header = (DOCS / "samples-template.csv").read_text().splitlines()[0]
    assert header in page


def test_data_page_names_the_download_and_its_checksum():
    from cup4soil.sources.resources import DLR_THRESHOLD_URL

    page = (DOCS / "data.md").read_text()
    assert DLR_THRESHOLD_URL in page and "CUP4SOIL_DLR_THRESHOLD" in page
    digest = re.search(r"`([0-9a-f]{64})`", page).group(1)
    raster = SHARED / "scmap" / "th_S2_s2cr_buffered_cog.tif"
    if not raster.is_file():
        pytest.skip("shared test data not found")
    assert hashlib.sha256(raster.read_bytes()).hexdigest() == digest


def test_benchmarks_page_gives_the_command_of_every_script():
    page = (DOCS / "benchmarks.md").read_text()
    scripts = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")
                     if not p.name.startswith("_"))
    assert scripts
    missing = [s for s in scripts if f"python benchmarks/{s}" not in page]
    assert not missing, f"docs/benchmarks.md does not say how to run {missing}"
