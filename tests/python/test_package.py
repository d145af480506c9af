"""`pip install ./python` in a fresh virtual environment: the package, its build backend and its
dependencies from PyPI (as scripts/python-env.sh gets the tests' own), then import it."""
import os
import shutil
import subprocess
import sys

from conftest import ROOT


def test_pip_install_into_fresh_venv(tmp_path):
    src = tmp_path / "python"
    shutil.copytree(os.path.join(ROOT, "python"), src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        str(src)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([py, "-m", "pip", "show", "-f", "sbertd"], capture_output=True,
                       text=True, check=True)
    for f in ("sbertd/__init__.py", "sbertd/client.py", "sbertd/errors.py", "sbertd/encoder.py",
              "sbertd/langchain.py", "sbertd/bulk.py"):
        assert f in r.stdout, r.stdout
    r = subprocess.run([py, "-c", "import sbertd, sbertd.bulk; print(sbertd.__version__, "
                        "sbertd.Client, sbertd.Encoder, len(sbertd.BY_CODE))"],
                       capture_output=True, text=True, cwd=str(tmp_path))
    assert r.returncode == 0 and r.stdout.startswith("0.1.0"), r.stdout + r.stderr
