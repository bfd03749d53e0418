import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from alignimate import __version__
from alignimate.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("register", "apply", "animate", "faces", "models"):
        assert command in result.output


def test_every_command_has_help_with_an_example() -> None:
    for command in ("register", "apply", "animate", "faces"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, command
        assert f"alignimate {command}" in result.output, command


def test_bad_config_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[register]\nsize = 'huge'\n")
    result = runner.invoke(
        app, ["register", str(tmp_path), "--out", str(tmp_path / "o"), "--config", str(bad)]
    )
    assert result.exit_code == 2
    assert "size must be int" in result.output
    assert "Traceback" not in result.output


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "alignimate", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"alignimate {__version__}"


def test_threads_option_sets_torch_threads_and_rejects_zero(tmp_path: Path, monkeypatch) -> None:
    import torch

    asked: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", asked.append)
    for command in (
        ["register", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
        ["faces", str(tmp_path / "none"), "-o", str(tmp_path / "t.gif")],
    ):
        result = runner.invoke(app, [*command, "--threads", "1"])
        assert result.exit_code == 2 and "not a folder" in result.output  # got past the option
        result = runner.invoke(app, [*command, "--threads", "0"])
        assert result.exit_code == 2 and "--threads must be between 1 and 256" in result.output
    result = runner.invoke(
        app, ["apply", str(tmp_path / "t.json"), "--out", str(tmp_path / "a"), "--threads", "3"]
    )
    assert result.exit_code == 2
    assert asked == [1, 1, 3]


def test_threads_option_also_bounds_the_photos_processed_at_once(tmp_path: Path, monkeypatch) -> None:
    import torch

    import alignimate.pipeline.apply as apply_module
    import alignimate.pipeline.register_folder as register_folder

    monkeypatch.setattr(torch, "set_num_threads", lambda _n: None)  # keep this process's setting
    photos = tmp_path / "photos"
    photos.mkdir()
    scenes = Path(__file__).resolve().parents[1] / "sample_data" / "scenes"
    for path in sorted(scenes.glob("scene_0[0-2].jpg")):
        (photos / path.name).write_bytes(path.read_bytes())
    seen: list[tuple[str, int]] = []

    def spy(name, real):
        def write_frames(*args, **kwargs):
            seen.append((name, kwargs["workers"]))
            return real(*args, **kwargs)

        return write_frames

    monkeypatch.setattr(register_folder, "write_frames", spy("register", register_folder.write_frames))
    monkeypatch.setattr(apply_module, "write_frames", spy("apply", apply_module.write_frames))
    out = tmp_path / "aligned"
    result = runner.invoke(app, ["register", str(photos), "--out", str(out), "--threads", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["apply", str(out / "transforms.json"), "--out", str(tmp_path / "again"), "--threads", "2", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert seen == [("register", 1), ("apply", 2)]
