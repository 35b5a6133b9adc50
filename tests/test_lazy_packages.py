"""Stage packages load their submodules on first use (sinktrain/util/lazy.py), so that a verb's --help and a
config refused before anything runs load no torch or transformers. What must still hold: every exported name is the
object of the submodule the package says, and importing a submodule directly never replaces it."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

LAZY = ["sinktrain.train", "sinktrain.export", "sinktrain.stream", "sinktrain.zeroshot", "sinktrain.experiment"]
HEAVY = ("torch", "transformers", "lightning", "lm_eval")


@pytest.mark.parametrize("package", LAZY)
def test_every_name_is_its_submodules_object_and_no_name_is_a_submodule(package):
    pkg = importlib.import_module(package)
    exports = pkg._EXPORTS
    submodules = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
    # A name that is also a submodule's would become the module once anything imported that submodule (the stream
    # package's `evaluate` function and its evaluate.py did: the module is evaluation.py now).
    assert not set(exports) & submodules, set(exports) & submodules
    assert set(exports) <= set(pkg.__all__) and set(exports) <= set(dir(pkg))
    for name, sub in exports.items():
        assert sub in submodules, (name, sub)
        importlib.import_module(f"{package}.{sub}")  # loaded first, as any other module might
        assert getattr(pkg, name) is getattr(importlib.import_module(f"{package}.{sub}"), name), name
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        pkg.no_such_name  # noqa: B018


def test_the_packages_and_every_verbs_config_import_without_torch():
    configs = ["sinktrain.train.config", "sinktrain.export.config", "sinktrain.stream.config",
               "sinktrain.zeroshot.config", "sinktrain.experiment.config", "sinktrain.generate.config",
               "sinktrain.data.preparation"]
    code = (f"import importlib, sys\nfor m in {LAZY + configs!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
