"""The package as pip installs it: editable (`pip install -e .`) and from a wheel.

Offline and quick: a virtualenv in the test's tmp directory borrows this
virtualenv's packages through a .pth file, and pip installs only jsongle
(``--no-deps --no-index --no-build-isolation``) from a fresh clone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from jsongle.config import KEYS
from jsongle.demo import FILES
from tests.support.daemon import LISTENING, REPO_ROOT, TWISTD_MAIN, write_env_file

SITE_PACKAGES = next((Path(p) for p in sys.path if p.endswith("site-packages") and Path(p, "twisted").is_dir()), None)


def _run(argv: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    return subprocess.run(argv, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("src") / "jsongle"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(target)], check=True, timeout=60)
    return target


@pytest.fixture
def venv(tmp_path) -> Path:
    """A bare virtualenv that sees this one's packages (Twisted, pip, setuptools) but not jsongle."""
    if SITE_PACKAGES is None:
        pytest.skip("cannot find this interpreter's site-packages to lend to a new virtualenv")
    path = tmp_path / "venv"
    result = _run([sys.executable, "-m", "venv", "--without-pip", str(path)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    own = Path(_run([str(path / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"], cwd=tmp_path).stdout.strip())
    (own / "borrowed.pth").write_text(f"{SITE_PACKAGES}\n")
    return path


def pip_install(venv: Path, *args: str) -> None:
    result = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation", *args], cwd=venv.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def twistd(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run([str(venv / "bin" / "python"), "-c", TWISTD_MAIN, *args], cwd=cwd, timeout=60)


def test_editable_install_registers_twistd_jsongle(clone, venv, tmp_path):
    pip_install(venv, "-e", str(clone))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = twistd(venv, elsewhere, "jsongle", "--help")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration keys" in result.stdout
    assert all(f"  {key} = " in result.stdout for key in KEYS)


def test_installed_package_serves_the_demo_and_prints_a_config(clone, venv, tmp_path):
    wheels = tmp_path / "wheels"
    built = _run([str(venv / "bin" / "python"), "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation", "-w", str(wheels), str(clone)], cwd=tmp_path)
    assert built.returncode == 0, built.stdout + built.stderr
    pip_install(venv, *map(str, wheels.glob("jsongle-*.whl")))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sample = twistd(venv, elsewhere, "jsongle", "--print-config")
    assert sample.returncode == 0 and "demo=false" in sample.stdout, sample.stderr
    # The installed package (not the checkout) serves the page.
    env_path = write_env_file(tmp_path / "run", {"demo": True})
    proc = subprocess.Popen(
        [str(venv / "bin" / "python"), "-c", TWISTD_MAIN, "-n", "--pidfile=", "--logfile=-", "jsongle", "--config", str(env_path)],
        cwd=str(elsewhere), env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert proc.stdout is not None
        output = []
        for line in proc.stdout:
            output.append(line)
            match = LISTENING.search(line)
            if match and match.group(1) == "websocket":
                break
        else:
            pytest.fail("the installed server did not start:\n" + "".join(output))
        port = int(match.group(2))
        for name in FILES:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/demo/{name}", timeout=10) as answer:
                assert answer.status == 200 and answer.read(), name
        where = _run([str(venv / "bin" / "python"), "-c", "import jsongle.demo; print(jsongle.demo.__file__)"], cwd=elsewhere)
        assert not where.stdout.strip().startswith(str(clone)), where.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=15)
