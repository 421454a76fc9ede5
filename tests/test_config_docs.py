"""`twistd jsongle --help`, `--print-config`, the README table and the loader agree.

One table (``jsongle.config.KEYS`` with the defaults of ``Config``) feeds the
loader, the help and the sample; the README is written by hand, so it is
checked against that table: every key, and a default that loads to the same
value.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jsongle.config import DEFAULT_CONFIG, KEYS, Config, load_config
from tests.support.daemon import REPO_ROOT, TWISTD_MAIN

HELP_KEY = re.compile(r"^  (\w+) = (.*)$")
README_ROW = re.compile(r"^\| `(\w+)` \| ([^|]*) \|")


def twistd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run(
        [sys.executable, "-c", TWISTD_MAIN, *args], cwd=str(cwd), env=env, capture_output=True, text=True, timeout=60
    )


def loads_as_default(key: str, shown: str) -> bool:
    """Whether ``shown`` (as the docs print it) parses to the key's default."""
    raw = "" if shown.startswith("(") else shown.strip("`")
    config, _ = load_config(None, {key: raw})
    field = KEYS[key].field
    return getattr(config, field) == getattr(DEFAULT_CONFIG, field)


@pytest.fixture(scope="module")
def help_keys(tmp_path_factory) -> dict[str, str]:
    # From another directory, as a pip-installed package is used.
    result = twistd("jsongle", "--help", cwd=tmp_path_factory.mktemp("cwd"))
    assert result.returncode == 0, result.stderr
    keys = {}
    for line in result.stdout.splitlines():
        match = HELP_KEY.match(line)
        if match:
            keys[match.group(1)] = match.group(2)
    return keys


def readme_keys() -> dict[str, str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| key | default | |") :].split("\n\n", 1)[0]
    return {m.group(1): m.group(2).strip() for m in map(README_ROW.match, table.splitlines()) if m}


def test_help_lists_every_key_in_the_loaders_order(help_keys):
    assert list(help_keys) == list(KEYS)


@pytest.mark.parametrize("key", list(KEYS))
def test_help_default_is_the_loaders(help_keys, key):
    assert loads_as_default(key, help_keys[key]), f"--help shows {key} = {help_keys[key]}"


def test_readme_table_lists_every_key():
    assert sorted(readme_keys()) == sorted(KEYS)


@pytest.mark.parametrize("key", list(KEYS))
def test_readme_default_is_the_loaders(key):
    shown = readme_keys()[key]
    assert loads_as_default(key, shown), f"README shows {key} default {shown}"


def test_print_config_is_a_working_sample(tmp_path):
    result = twistd("jsongle", "--print-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    sample = tmp_path / "sample.env"
    sample.write_text(result.stdout, encoding="utf-8")
    config, warnings = load_config(str(sample), {})
    assert warnings == []
    assert config == Config()
    lines = result.stdout.splitlines()
    set_keys = [line.split("=", 1)[0] for line in lines if line and not line.startswith("#")]
    assert set_keys == list(KEYS)
    for index, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[index - 1] == f"# {KEYS[line.split('=', 1)[0]].description}"
