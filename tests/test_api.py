"""The top-level Python API: every advertised name resolves, lazily."""

import subprocess
import sys

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
