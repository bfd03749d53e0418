"""Regenerate docs/configuration.md from alignimate.config.SCHEMA (the settings classes):
`python docs/gen_configuration.py`."""

from pathlib import Path

from alignimate.config import SCHEMA

INTRO = """# Configuration

Presets live in `configs/` as TOML files with one table per command. Load one with `--config FILE`;
a flag given on the command line overrides the file, and the file overrides the built-in default.
Unknown sections or keys, values of the wrong type and values outside the valid ones (the
"valid" column; the same bounds apply to the flags and to the Python API) are reported with the
file name and stop the command with exit status 2 before any work starts. The tables below
document every key; they are generated from the settings classes in `alignimate/settings.py` by
`python docs/gen_configuration.py`, and `tests/test_config.py` checks that they list exactly the
keys the code accepts.
"""


def render() -> str:
    lines = [INTRO]
    for section, options in SCHEMA.items():
        header = ["| key | type | default | valid | meaning |", "|---|---|---|---|---|"]
        lines += [f"## `[{section}]`", "", *header]
        for key, option in options.items():
            names = " or ".join("list" if t is tuple else t.__name__ for t in option.types if t is not list)
            valid = option.describe().replace("|", "\\|")
            meaning = option.help.replace("|", "\\|")
            default = list(option.default) if isinstance(option.default, tuple) else option.default
            lines.append(f"| `{key}` | {names} | `{default!r}` | {valid} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    (Path(__file__).parent / "configuration.md").write_text(render())
