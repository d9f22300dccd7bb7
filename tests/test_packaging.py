"""What `pip install switchboard` gets: the pages the server serves and GraphiQL's assets, not
only the Python modules (an editable install in the tests would hide a missing file)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.processes import ROOT


def test_the_wheel_carries_the_pages_and_the_offline_graphiql_assets(tmp_path: Path) -> None:
    source = tmp_path / "source"  # setuptools writes build/ into the tree it builds: not ours
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("server", "schema"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheel_dir = str(tmp_path / "dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", wheel_dir, str(source)],
        check=True,
        cwd=tmp_path,
        timeout=120,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("switchboard-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "server/static/graphiql.html",
        "server/static/demo.html",
        "server/py.typed",
        "schema/py.typed",
    } <= names
    vendored = {p.name for p in (ROOT / "server" / "static" / "vendor").glob("*.js*")}
    assert vendored, "run `make assets` first: GraphiQL's assets come from the npm registry"
    assert {f"server/static/vendor/{name}" for name in vendored} <= names
