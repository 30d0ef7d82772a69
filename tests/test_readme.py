"""The README tells the truth: every bash block runs, in order, on the sample data.

Network commands go to a loopback HTTP server that serves the sample data in the releases'
formats (the built-in mirrors and the `https://mirror.example` of the examples point there).
A block that cannot run here (installing packages, the real datasets, several GPUs) carries
`<!-- readme-test: skip (reason) -->` on the line before it; there must be few of those.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import importlib
import os
import re
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SAMPLE = ROOT / "dinctl" / "sample_data"
SKIP = re.compile(r"<!-- readme-test: skip \((.+)\) -->")
MAX_SKIPPED = 4
FAKE_MIRROR = "https://mirror.example"


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    skip: str | None  # the marker's reason


def readme_blocks(text: str) -> list[Block]:
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        prev = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = SKIP.search(prev)
        code = "\n".join(lines[i + 1 : end]) + "\n"
        blocks.append(Block(m.group(1), code, i + 1, marker.group(1) if marker else None))
        i = end + 1
    return blocks


def test_few_blocks_are_skipped_and_each_says_why() -> None:
    blocks = readme_blocks(README.read_text())
    bash = [b for b in blocks if b.lang == "bash"]
    skipped = [b for b in bash if b.skip]
    assert len(bash) >= 10
    assert 0 < len(skipped) <= MAX_SKIPPED, [b.line for b in skipped]
    assert len(SKIP.findall(README.read_text())) == len(skipped)  # every marker sits on a block


def test_bash_blocks_have_no_placeholders_to_fill_in() -> None:
    for block in readme_blocks(README.read_text()):
        if block.lang != "bash":
            continue
        for line in block.code.splitlines():
            command = line.split("#", 1)[0]
            assert not re.search(r"\[-{1,2}\w|<[a-z_ ]+>|\.\.\.", command), (block.line, line)


# --------------------------------------------------------------------------- the loopback mirror


def _mirror_files(root: Path) -> str:
    """The sample data as the releases ship it; returns the md5 of the MovieLens zip."""
    amazon = root / "amazon"
    amazon.mkdir(parents=True)
    for category in ("Electronics", "Books"):
        for src, name in (
            ("reviews_Electronics_5.json", f"reviews_{category}_5.json.gz"),
            ("meta_Electronics.json", f"meta_{category}.json.gz"),
        ):
            (amazon / name).write_bytes(
                gzip.compress((SAMPLE / "amazon" / src).read_bytes(), mtime=0)
            )
    movielens = root / "movielens"
    movielens.mkdir()
    with zipfile.ZipFile(movielens / "ml-20m.zip", "w") as zf:
        for name in ("ratings.csv", "movies.csv"):
            zf.write(SAMPLE / "movielens" / name, f"ml-20m/{name}")
    return hashlib.md5((movielens / "ml-20m.zip").read_bytes()).hexdigest()


@contextlib.contextmanager
def _serve(root: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


WRAPPER = """#!{python}
import os, sys
sys.path.insert(0, {root!r})
from dinctl.data.datasets import amazon, movielens
base = os.environ["DINCTL_README_MIRROR"]
amazon.AMAZON_MIRRORS = (base + "/amazon/",)
movielens.MOVIELENS_MIRRORS = (base + "/movielens/",)
movielens.MOVIELENS_MD5 = {{**movielens.MOVIELENS_MD5, "20m": os.environ["DINCTL_README_MD5"]}}
from dinctl.cli.main import main
main()
"""


@pytest.mark.slow
def test_every_bash_block_runs_on_the_sample_data(tmp_path: Path) -> None:
    work, bin_dir, served = tmp_path / "work", tmp_path / "bin", tmp_path / "served"
    work.mkdir()
    bin_dir.mkdir()
    (work / "sample_data").symlink_to(SAMPLE)
    md5 = _mirror_files(served)
    wrapper = bin_dir / "dinctl"
    wrapper.write_text(WRAPPER.format(python=sys.executable, root=str(ROOT)))
    wrapper.chmod(0o755)
    blocks = [b for b in readme_blocks(README.read_text()) if b.lang in ("bash", "python")]
    with _serve(served) as base:
        env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1",
            "DINCTL_README_MIRROR": base,
            "DINCTL_README_MD5": md5,
        }
        for block in blocks:
            if block.skip:
                continue
            code = block.code.replace(FAKE_MIRROR, base)
            if block.lang == "bash":
                cmd = ["bash", "-euo", "pipefail", "-c", code]
            else:
                cmd = [sys.executable, "-c", code]
            result = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
            assert result.returncode == 0, (
                f"README.md line {block.line}:\n{block.code}\n{result.stderr[-3000:]}"
            )


# --------------------------------------------------------------------------- docs


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.rstrip().splitlines()[-1] == "make test"
    assert "make test" in readme_blocks(README.read_text())[0].code
    makefile = (ROOT / "Makefile").read_text()
    assert "-m venv" in makefile and "torch==2.13.0" in makefile


def test_the_equation_index_points_at_real_code() -> None:
    table = (ROOT / "docs" / "equations.md").read_text()
    refs = re.findall(r"`(dinctl[\w.]*):([\w.]+)`", table)
    assert len(refs) >= 12
    for module, attr in refs:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)  # AttributeError names what moved


def test_no_reference_to_a_design_document_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    needles = ("DESIGN" + ".md", "DESIGN" + " §")  # spelled apart, so this file is no offender
    for name in tracked:
        path = ROOT / name
        if path.suffix in (".py", ".md", ".toml", ".txt") and path.is_file():
            text = path.read_text(errors="replace")
            if any(n in text for n in needles):
                offenders.append(name)
    assert offenders == []
