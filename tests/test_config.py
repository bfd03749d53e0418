import re
from pathlib import Path

import pytest

from alignimate.config import SCHEMA, ConfigError, load_config, resolve

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("preset", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_preset_loads(preset: Path) -> None:
    config = load_config(preset)
    assert config, f"{preset.name} sets nothing"
    for section, values in config.items():
        assert set(values) <= set(SCHEMA[section])


def test_docs_list_exactly_the_schema_keys() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for section, options in SCHEMA.items():
        block = text.split(f"## `[{section}]`")[1].split("\n## ")[0]
        documented = set(re.findall(r"^\| `(\w+)` \|", block, flags=re.M))
        assert documented == set(options), section


def test_flag_overrides_file_overrides_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[register]\nmodel = "homography"\nsize = 256\n')
    merged = resolve("register", {"size": 1024, "mode": None}, load_config(cfg))
    assert merged["size"] == 1024  # flag wins
    assert merged["model"] == "homography"  # file wins over default
    assert merged["mode"] == SCHEMA["register"]["mode"].default


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[register]\nsize = 'big'\n", "size must be int"),
        ("[register]\nsize = true\n", "size must be int"),
        ("[register]\nspeed = 3\n", "unknown key 'speed'"),
        ("[nonsense]\na = 1\n", "unknown section [nonsense]"),
        ("[register\n", "not valid TOML"),
    ],
)
def test_bad_config_names_file_and_reason(tmp_path: Path, text: str, fragment: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert str(cfg) in str(info.value)
    assert fragment in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")


def test_python_options_take_paths_as_text_and_none_as_not_given() -> None:
    from alignimate.settings import FacesSettings, RegisterSettings

    base = RegisterSettings(detect_size=800)
    chosen = RegisterSettings.with_options(base, {"source": Path("points.json"), "detect_size": None})
    assert chosen.source == "points.json" and chosen.detect_size == 800
    assert FacesSettings.with_options(None, {"identity": Path("me.jpg")}).identity == "me.jpg"
    assert RegisterSettings.with_options(None, {"keypoints": ["a", "b"]}).keypoints == ("a", "b")
