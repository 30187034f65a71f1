"""The linter and the type checker, as tests: the README's test command runs them too.

Both are pinned in constraints.txt and configured in pyproject.toml ([tool.ruff],
[tool.mypy]); a finding fails the test with the tool's own report.
"""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    exe = shutil.which(args[0], path=str(Path(sys.executable).parent)) or args[0]
    return subprocess.run([exe, *args[1:]], cwd=ROOT, capture_output=True, text=True)


def test_ruff_finds_nothing():
    r = _run("ruff", "check", "src", "tests", "benchmarks")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_finds_nothing():
    r = _run("mypy", "src/lstmlab")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success: no issues found" in r.stdout
