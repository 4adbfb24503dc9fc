"""README.md's results block is generated from the shipped files and cannot drift from them."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_results_block_matches_the_shipped_files():
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "readme_results.py"), "--check"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_readme_first_screen_has_the_two_commands():
    head = (ROOT / "README.md").read_text().splitlines()[:40]
    text = "\n".join(head)
    assert "pip install -e . && ohgw-bench sweep configs/exp1-mini-surrogate.yaml" in text
    assert "pip install -e '.[test,ray]' && python -m pytest -q" in text
