"""lossviz as a library: the built wheel declares only the core dependencies, carries its licence,
and, installed with --no-deps beside nothing but torch and numpy, computes a loss, its pair
weights and a metric (offline: no package index is used)."""

import os
import pathlib
import shutil
import subprocess
import sys
import venv
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SITE = pathlib.Path(__import__("torch").__file__).resolve().parents[1]     # where torch is installed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    """The wheel, built from a copy of what it is made of (setuptools writes build/ beside its input)."""
    out = tmp_path_factory.mktemp("wheel")
    src = out / "src"
    shutil.copytree(ROOT / "lossviz", src / "lossviz", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PIP_NO_INPUT": "1"}, cwd=out, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("lossviz-*.whl")
    return path


def test_the_wheel_declares_only_the_core_and_carries_the_papers_and_the_licence(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    required = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    core = sorted(r.split(">")[0].split("=")[0].split(";")[0].strip() for r in required if "extra ==" not in r)
    assert core == ["numpy", "torch", "tqdm"]
    assert all(">=" in r for r in required if "extra ==" not in r)            # ranges, not pins
    assert "Requires-Python: >=3.11" in meta and "License-Expression: MIT" in meta
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert "lossviz/papers/meow.py" in names and "lossviz/__main__.py" in names
    assert not any(n.startswith(("data/", "tests/", "notebooks/")) for n in names)


def test_the_wheel_works_with_only_torch_and_numpy(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = pathlib.Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                       capture_output=True, text=True, check=True).stdout.strip())
    # torch and numpy (and what torch itself imports) from this environment, nothing else of it
    lend = tmp_path / "lent"
    lend.mkdir()
    for entry in SITE.iterdir():
        top = entry.name.split("-")[0].split(".")[0].lower()
        if top in {"torch", "numpy", "numpy.libs", "typing_extensions", "filelock", "sympy", "mpmath",
                   "networkx", "jinja2", "markupsafe", "fsspec", "functorch", "torchgen"}:
            (lend / entry.name).symlink_to(entry)
    (site / "lent.pth").write_text(str(lend) + "\n")
    with zipfile.ZipFile(wheel) as z:                     # install = unpack a pure-Python wheel
        z.extractall(site)
    code = """
import importlib.util, torch, lossviz as lv
for name in ("matplotlib", "ipywidgets", "sklearn", "scipy", "tqdm", "mnist1d", "PIL"):
    assert importlib.util.find_spec(name) is None, name + " should not be installed here"
g = torch.Generator().manual_seed(0)
x, y = torch.randn(12, 5, generator=g), torch.arange(3).repeat_interleave(4)
S = lv.similarity(x)
W = lv.pair_weights(lv.ms_loss, S, y)
assert torch.isfinite(lv.ms_loss(S, y)) and W.shape == (12, 12) and (W > 0).any()
assert 0 <= lv.recall_at_k(x, y, 1) <= 1 and 0 <= lv.map_at_r(x, y) <= 1
assert float(lv.nt_xent_loss(S, y, tau=0.1)) > 0
assert "site-packages" not in str(lv.data.DATA_DIR)
print("ok", lv.__version__, lv.__file__)
"""
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LOSSVIZ_DATA")},
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok") and str(site) in done.stdout
