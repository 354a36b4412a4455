"""The installed package: a built wheel finds its recipes by name, without the repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile

import pytest

from support import REPO


def test_the_package_list_names_every_subpackage():
    block = re.search(r"^packages = \[(.*?)\]", (REPO / "pyproject.toml").read_text(), re.M | re.S)
    listed = set(re.findall(r'"([\w.]+)"', block[1]))
    found = {
        ".".join(p.relative_to(REPO).parent.parts) for p in (REPO / "lstmlab").rglob("__init__.py")
    }
    assert listed == found | {"lstmlab.recipes"}


@pytest.mark.slow
def test_a_built_wheel_finds_recipes_by_name(tmp_path):
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    build = subprocess.run(
        [
            *pip,
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("lstmlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert (
        "lstmlab/recipes/tiny/lstm.yaml" in names and "lstmlab/recipes/ptb/mogrifier.yaml" in names
    )
    site = tmp_path / "site"
    install = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"  # no ./recipes here: only the installed ones
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "LSTMLAB_DATA_DIR": str(tmp_path / "data")}

    def lstmlab(*args):
        return subprocess.run(
            [sys.executable, "-m", "lstmlab", *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    listed = lstmlab("recipes")
    assert listed.returncode == 0 and "tiny/lstm.yaml" in listed.stdout, listed.stderr
    assert str(site) in listed.stdout  # read from the installed package, not the checkout
    dry = lstmlab("train", "tiny/lstm", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "hidden_dim" in dry.stdout
