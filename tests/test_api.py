"""The top-level Python API: every advertised name resolves, lazily."""

import subprocess
import sys
from pathlib import Path

import pytest

import alignimate


def test_every_public_name_resolves() -> None:
    for name in alignimate.__all__:
        assert getattr(alignimate, name) is not None, name


def test_import_alignimate_does_not_import_torch() -> None:
    code = "import sys, alignimate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_attribute_raises() -> None:
    try:
        alignimate.no_such_thing  # noqa: B018
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_workers_must_be_a_positive_int(tmp_path: Path) -> None:
    from alignimate.pipeline import UsageError

    (tmp_path / "photos").mkdir()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(UsageError, match="workers"):
            alignimate.align_folder(tmp_path / "photos", tmp_path / "out", workers=bad)
