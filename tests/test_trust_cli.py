"""Issue 12, the command line: bad input answered by one clear line, data never lost.

Negative numbers in option values, ``-v`` after the command, ``--zarr-format`` on every
command that writes, ``--out`` onto a file or a folder of other files, ``info`` on what is
not a product, an unexpected error as one redacted line.
"""

from __future__ import annotations

import pytest

from cup4soil.cli import main
from cup4soil.cli.main import build_parser


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("aoi", ["-9.5,36,-6,42", "-9.5, 36, -6, 42"])
def test_negative_numbers_in_aoi_are_a_value(aoi, capsys):
    # parsed (not "expected one argument"); the catalog is the failure that follows
    assert main(["search", "--aoi", aoi, "--time", "2020", "--catalog", "nowhere"]) == 2
    err = _err(capsys)
    assert "unknown catalog" in err and "expected one argument" not in err


def test_negative_threshold_reaches_the_command():
    args = build_parser().parse_args(["composite", "--aoi", "1,2,3,4", "--time", "2020",
                                      "--out", "x.zarr", "--threshold", "-0.25"])
    assert args.threshold == "-0.25"
    from cup4soil.cli.main import _join_negative_values

    joined = _join_negative_values(["composite", "--threshold", "-0.25", "--aoi", "-1,2,3,4"])
    assert joined == ["composite", "--threshold=-0.25", "--aoi=-1,2,3,4"]


def test_verbose_after_the_command_shows_the_traceback():
    with pytest.raises(Exception, match="unknown catalog"):
        main(["search", "--aoi", "oderbruch", "--time", "2020", "--catalog", "x", "-v"])
    with pytest.raises(Exception, match="unknown catalog"):
        main(["search", "--verbose", "--aoi", "oderbruch", "--time", "2020", "--catalog", "x"])


def test_every_writing_command_takes_zarr_format():
    p = build_parser()
    for argv in (["composite", "--aoi", "a", "--time", "t", "--out", "o"],
                 ["predict", "m", "--covariates", "c", "--out", "o"],
                 ["demo"]):
        assert p.parse_args([*argv, "--zarr-format", "2"]).zarr_format == 2
        assert p.parse_args(argv).zarr_format == 3
    with pytest.raises(SystemExit):
        p.parse_args(["demo", "--zarr-format", "4"])


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_composite_onto_a_folder_of_other_files_keeps_it(sample, shared_data, tmp_path,
                                                        monkeypatch, capsys, overwrite):
    monkeypatch.setenv("CUP4SOIL_DLR_THRESHOLD",
                       str(shared_data / "scmap/th_S2_s2cr_buffered_cog.tif"))
    out = tmp_path / "fieldwork"
    (out / "photos").mkdir(parents=True)
    (out / "photos" / "p1.jpg").write_bytes(b"jpg")
    (out / "notes.txt").write_text("notes")
    w, s, e, n = sample.bbox
    code = main(["composite", "--aoi", f"{w},{s},{e},{n}", "--time", "2019",
                 "--catalog", str(sample.catalog), "--out", str(out), *overwrite])
    assert code == 2
    err = _err(capsys)
    assert "not a cup4soil product" in err and "notes.txt" in err and "bucket" not in err
    assert (out / "notes.txt").read_text() == "notes"
    assert (out / "photos" / "p1.jpg").read_bytes() == b"jpg"


def test_info_on_a_file_and_a_folder(tmp_path, capsys):
    f = tmp_path / "x.zarr"
    f.write_text("text")
    assert main(["info", str(f)]) == 2
    assert "is a file" in _err(capsys)
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.csv").write_text("a")
    assert main(["info", str(d)]) == 2
    err = _err(capsys)
    assert "not a cup4soil product" in err and "resume" not in err


def test_an_unexpected_error_is_one_redacted_line(monkeypatch, capsys):
    from cup4soil.cli import search as search_cmd

    def broken(args):
        raise RuntimeError("boom at https://x/y.tif?sig=SECRETSIG\nsecond line")

    monkeypatch.setattr(search_cmd, "run", broken)
    assert main(["search", "--aoi", "oderbruch", "--time", "2020"]) == 1
    err = _err(capsys)
    assert err.startswith("cup4soil: unexpected error: RuntimeError: boom") and \
        "SECRETSIG" not in err and "--verbose" in err
