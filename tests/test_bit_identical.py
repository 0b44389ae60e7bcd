"""Products are bit-identical to those recorded before the layout change (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from product_checksums import product_checksums

REFERENCE = Path(__file__).with_name("data") / "product-checksums.json"


@pytest.mark.slow
def test_products_are_bit_identical(tmp_path: Path) -> None:
    expected = json.loads(REFERENCE.read_text())
    got = product_checksums(tmp_path)
    assert got.keys() == expected.keys()
    differ = sorted(k for k in expected if got[k] != expected[k])
    assert not differ, f"products changed: {differ}"
