"""The wheel built from the repo carries its default data: the bundled tokenizer is package data.

(The full check, a clean venv running every verb from the installed wheel, is `.ci/wheel-smoke`.)
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_holds_the_bundled_tokenizer(tmp_path):
    # Build from a copy of the sources: an in-tree build/ left by an earlier build could hide a missing file.
    src = tmp_path / "src"
    shutil.copytree(REPO / "sinktrain", src / "sinktrain", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(src)], check=True, cwd=tmp_path)
    wheel, = tmp_path.glob("sinktrain-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sinktrain/data/bundled/gpt-neox-20b.json" in names
    data = zipfile.ZipFile(wheel).read("sinktrain/data/bundled/gpt-neox-20b.json")
    assert data == (REPO / "sinktrain/data/bundled/gpt-neox-20b.json").read_bytes()
    assert not any(n.startswith(("data/", "tests/")) for n in names)  # only the package ships
