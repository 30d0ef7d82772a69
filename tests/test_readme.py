"""The README and the docs tell the truth: every example runs, every sample output is today's.

Every `bash` and `python` block of README.md and of the docs pages in PAGES runs, in order, in
one working folder holding the sample data. A `console` block is a transcript: its first line
is `$ COMMAND`, the rest is what the command prints (stdout and stderr, as a terminal shows
them). The command runs at that point of the sequence and its output must match the block
after timings, table widths and the working folder are normalised away, so a stale figure
fails. `make readme` (`python tests/test_readme.py --write`) runs the same sequence and
rewrites the transcripts that drifted.

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
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SAMPLE = ROOT / "dinctl" / "sample_data"
# the pages whose examples run, in the order they run (later pages use what earlier ones made)
PAGES = (
    "README.md",
    "docs/preprocess.md",
    "docs/download.md",
    "docs/train.md",
    "docs/evaluate.md",
    "docs/visualize.md",
    "docs/serving.md",
    "docs/experiments.md",
    "docs/distributed.md",
)
REGENERATE = "make readme"
SKIP = re.compile(r"<!-- readme-test: skip \((.+)\) -->")
MAX_SKIPPED = 6
FAKE_MIRROR = "https://mirror.example"
RUN_LANGS = ("bash", "python", "console")
# what the examples may leave in the working folder: the sample data link and ignored folders
LEFT_BEHIND = {"sample_data", "data", "runs", "quickstart"}


@dataclass(frozen=True)
class Block:
    page: str
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    end: int  # 0-based index of the closing fence
    skip: str | None  # the marker's reason

    @property
    def where(self) -> str:
        return f"{self.page} line {self.line}"


def readme_blocks(text: str, page: str = "README.md") -> list[Block]:
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
        blocks.append(
            Block(page, m.group(1), code, i + 1, end, marker.group(1) if marker else None)
        )
        i = end + 1
    return blocks


def page_blocks(page: str) -> list[Block]:
    return readme_blocks((ROOT / page).read_text(), page)


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in page_blocks(page)]


# --------------------------------------------------------------------------- transcripts


def transcript(block: Block) -> tuple[str, str]:
    """(command, the output the page shows) of a `console` block."""
    lines = block.code.splitlines()
    if not lines or not lines[0].startswith("$ "):
        raise ValueError(f"{block.where}: a console block starts with `$ COMMAND`")
    command = [lines[0][2:]]
    k = 1
    while command[-1].endswith("\\") and k < len(lines):
        command.append(lines[k])
        k += 1
    return "\n".join(command), "\n".join(lines[k:])


TIMING = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:ms|s)\b")


CHECKSUM = re.compile(r"(dataset_checksum:?\s+)[0-9a-f]{12}\b")


def normalise(text: str) -> list[str]:
    """The lines that must match: timings and dataset checksums (a hash of the Parquet files'
    bytes, which change with the Polars version that wrote them: polars 2.2.0 against 2.1.0
    gave another checksum for the same rows) masked, runs of spaces and of box-drawing rules
    collapsed (a longer timing widens a table), blank lines and trailing spaces dropped."""
    text = TIMING.sub("<time>", text)
    text = CHECKSUM.sub(r"\1<checksum>", text)
    text = re.sub(r"[─━═]+", "─", text)
    text = re.sub(r"[ \t]+", " ", text)
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class Drift:
    block: Block
    command: str
    shown: str
    printed: str

    def message(self) -> str:
        shown, printed = normalise(self.shown), normalise(self.printed)
        k = next(
            (i for i, (a, b) in enumerate(zip(shown, printed, strict=False)) if a != b),
            min(len(shown), len(printed)),
        )
        page = shown[k] if k < len(shown) else "(nothing)"
        now = printed[k] if k < len(printed) else "(nothing)"
        return (
            f"{self.block.where}: `{self.command}` no longer prints what the page shows\n"
            f"  page: {page}\n  now:  {now}\n"
            f"regenerate the sample outputs with `{REGENERATE}`"
        )


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


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def _serve(root: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
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


@contextlib.contextmanager
def sandbox(tmp: Path) -> Iterator[tuple[Path, dict[str, str], str]]:
    """(working folder with `sample_data`, environment, mirror URL) for running the pages."""
    work, bin_dir, served = tmp / "work", tmp / "bin", tmp / "served"
    work.mkdir()
    bin_dir.mkdir()
    (work / "sample_data").symlink_to(SAMPLE)
    md5 = _mirror_files(served)
    wrapper = bin_dir / "dinctl"
    wrapper.write_text(WRAPPER.format(python=sys.executable, root=str(ROOT)))
    wrapper.chmod(0o755)
    with _serve(served) as base:
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COLUMNS")},
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",  # stdout and stderr interleave as on a terminal
            "OMP_NUM_THREADS": "1",
            # the same float kernels on every x86-64 CPU with AVX2, so a training figure on the
            # pages is the one CI prints: ATen's, MKL's and oneDNN's AVX-512 paths round
            # differently (a sample table's AUC moved 0.004 between an AVX-512 machine and CI)
            "ATEN_CPU_CAPABILITY": "avx2",
            "MKL_CBWR": "AVX2",
            "ONEDNN_MAX_CPU_ISA": "AVX2",
            "COLUMNS": "100",  # `--help` is laid out for a 100-column terminal
            "DINCTL_README_MIRROR": base,
            "DINCTL_README_MD5": md5,
        }
        yield work, env, base


def run_pages(tmp: Path, *, all_of_them: bool = True) -> tuple[list[Drift], set[str]]:
    """Run the blocks of PAGES in order (or only up to the last transcript); the transcripts
    that drifted, and the names left in the working folder."""
    drifts = []
    blocks = [b for b in all_blocks() if not b.skip and b.lang in RUN_LANGS]
    if not all_of_them:
        last = max(k for k, b in enumerate(blocks) if b.lang == "console")
        blocks = blocks[: last + 1]
    with sandbox(tmp) as (work, env, base):
        for block in blocks:
            drift = _run_block(block, work, env, base)
            if drift is not None:
                drifts.append(drift)
        left = {p.name for p in work.iterdir()}
    return drifts, left


def _run_block(block: Block, work: Path, env: dict[str, str], base: str) -> Drift | None:
    if block.lang == "console":
        command, shown = transcript(block)
        done = subprocess.run(
            ["bash", "-uo", "pipefail", "-c", command.replace(FAKE_MIRROR, base)],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        printed = done.stdout.replace(f"{work}/", "").replace(str(work), ".")
        printed = printed.replace(f"{ROOT}/", "")  # the package's sample data, say
        printed = "\n".join(line.rstrip() for line in printed.strip("\n").splitlines())
        if done.returncode != 0 and "error:" not in shown:
            raise AssertionError(f"{block.where}: `{command}` failed:\n{printed[-3000:]}")
        return (
            None
            if normalise(shown) == normalise(printed)
            else Drift(block, command, shown, printed)
        )
    code = block.code.replace(FAKE_MIRROR, base)
    cmd = (
        ["bash", "-euo", "pipefail", "-c", code]
        if block.lang == "bash"
        else [sys.executable, "-c", code]
    )
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{block.where}:\n{block.code}\n{done.stderr[-3000:]}")
    return None


def rewrite(drifts: list[Drift]) -> None:
    """Put what the commands print now into the transcripts that drifted."""
    by_page: dict[str, list[Drift]] = {}
    for drift in drifts:
        by_page.setdefault(drift.block.page, []).append(drift)
    for page, found in by_page.items():
        lines = (ROOT / page).read_text().splitlines()
        for drift in sorted(found, key=lambda d: -d.block.line):  # bottom up: indices hold
            head = [
                "$ " + line if k == 0 else line for k, line in enumerate(drift.command.splitlines())
            ]
            lines[drift.block.line : drift.block.end] = head + drift.printed.splitlines()
        (ROOT / page).write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- the slow run


@pytest.mark.slow
def test_every_example_runs_and_prints_what_the_pages_show(tmp_path: Path) -> None:
    drifts, left = run_pages(tmp_path)
    assert not drifts, "\n\n".join(d.message() for d in drifts)
    # the examples write only into folders .gitignore keeps out of the repository
    assert left <= LEFT_BEHIND, sorted(left - LEFT_BEHIND)
    ignored = (ROOT / ".gitignore").read_text().split()
    assert all(f"/{name}/" in ignored for name in LEFT_BEHIND - {"sample_data"})


# --------------------------------------------------------------------------- the pages' shape


def test_few_blocks_are_skipped_and_each_says_why() -> None:
    blocks = all_blocks()
    runnable = [b for b in blocks if b.lang in RUN_LANGS]
    skipped = [b.where for b in runnable if b.skip]
    assert len(runnable) >= 20
    assert 0 < len(skipped) <= MAX_SKIPPED, skipped
    markers = sum(len(SKIP.findall((ROOT / page).read_text())) for page in PAGES)
    assert markers == len(skipped)  # every marker sits on a block


def test_bash_blocks_have_no_placeholders_to_fill_in() -> None:
    for block in all_blocks():
        if block.lang not in ("bash", "console"):
            continue
        code = transcript(block)[0] if block.lang == "console" else block.code
        for line in code.splitlines():
            command = line.split("#", 1)[0]
            assert not re.search(r"\[-{1,2}\w|<[a-z_ ]+>|\.\.\.", command), (block.where, line)


def test_every_console_block_is_a_transcript_and_the_readme_shows_no_other_output() -> None:
    for block in all_blocks():
        if block.lang == "console":
            command, shown = transcript(block)
            assert command.startswith("dinctl ") and shown.strip(), block.where
    langs = {b.lang for b in page_blocks("README.md")}
    assert langs <= {"bash", "console"}, langs  # an untyped or `text` block would go unchecked


def test_every_docs_page_with_examples_runs_and_the_index_links_every_page() -> None:
    docs = sorted(p for p in (ROOT / "docs").glob("*.md"))
    # a page outside PAGES may show code (signatures, snippets), but no command to run
    commands = ("bash", "console")
    with_examples = {
        f"docs/{p.name}"
        for p in docs
        if any(b.lang in commands for b in page_blocks(f"docs/{p.name}"))
    }
    assert with_examples <= set(PAGES), sorted(with_examples - set(PAGES))
    index = (ROOT / "docs" / "index.md").read_text()
    unlinked = [p.name for p in docs if p.name != "index.md" and f"]({p.name})" not in index]
    assert unlinked == []
    readme = README.read_text()
    assert "](docs/index.md)" in readme


def test_the_readme_first_screen_is_short_and_has_contents() -> None:
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 250, len(lines)
    headings = [line[3:] for line in lines if line.startswith("## ")]
    anchors = re.findall(r"^- \[(.+?)\]\(#([\w-]+)\)", text, re.M)
    assert [title for title, _ in anchors] == headings  # the contents list every section
    for title, anchor in anchors:
        assert anchor == re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-"), title
    setup = page_blocks("README.md")[0].code
    assert "make quickstart" in setup and "make test" in setup


def test_the_sample_config_is_the_quickstarts_setting() -> None:
    from dinctl.quickstart import QUICKSTART_TRAIN
    from dinctl.training.config import read_toml

    small = read_toml(SAMPLE / "small.toml")
    assert small == {k: QUICKSTART_TRAIN[k] for k in small}
    assert set(small) >= {"emb_dim", "emb_init_std", "lr", "epochs", "mlp_act", "linear_init"}
    assert QUICKSTART_TRAIN["seed"] == 0  # the README says so


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert [line for line in ci if line.startswith("make ")] == ["make test"]
    assert ci[-1] == "make test"
    assert re.search(r"^make test +#", readme_blocks(README.read_text())[0].code, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert "-m venv" in makefile and "torch==2.13.0" in makefile
    assert re.search(r"^readme: .*\n\t.*tests/test_readme\.py --write", makefile, re.M)
    assert re.search(r"^test-fast: .*\n\t.*-m \"not slow\"", makefile, re.M)


# --------------------------------------------------------------------------- the checker itself


def test_normalise_ignores_timings_and_widths_but_not_figures() -> None:
    shown = "test split, 2 run(s), 4.6s\n│ din │ 0.5640 │\n┏━━━━┓\n(trained, 5.6 s)  "
    now = "test split, 2 run(s), 14.2s\n│ din  │  0.5640 │\n┏━━━━━━┓\n(trained, 0.3 s)"
    assert normalise(shown) == normalise(now)
    assert normalise(shown) != normalise(now.replace("0.5640", "0.6280"))
    assert normalise("1 seed(s), 250 users") == ["1 seed(s), 250 users"]
    checksum = normalise("dataset_checksum 22dd362e04a6.")
    assert checksum == normalise("dataset_checksum 5b7df4ab51fd.")
    assert checksum != normalise("dataset data/other")


def test_a_drifted_transcript_names_the_command_and_the_way_to_regenerate() -> None:
    block = readme_blocks("x\n```console\n$ dinctl evaluate r\nAUC 0.5640\n```\n")[0]
    command, shown = transcript(block)
    message = Drift(block, command, shown, "AUC 0.6280").message()
    assert message.splitlines() == [
        "README.md line 2: `dinctl evaluate r` no longer prints what the page shows",
        "  page: AUC 0.5640",
        "  now:  AUC 0.6280",
        f"regenerate the sample outputs with `{REGENERATE}`",
    ]


def test_rewrite_puts_the_new_output_into_the_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "page.md"
    page.write_text("intro\n```console\n$ dinctl a \\\n  --b\nold\nlines\n```\nafter\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    block = readme_blocks(page.read_text(), "page.md")[0]
    command, shown = transcript(block)
    assert command == "dinctl a \\\n  --b"
    rewrite([Drift(block, command, shown, "new")])
    assert page.read_text() == "intro\n```console\n$ dinctl a \\\n  --b\nnew\n```\nafter\n"


# --------------------------------------------------------------------------- docs


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


def main() -> None:
    """`make readme`: run every page and rewrite the transcripts whose output changed."""
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_readme.py --write")
    with tempfile.TemporaryDirectory() as tmp:
        drifts, _ = run_pages(Path(tmp), all_of_them=False)
    rewrite(drifts)
    for drift in drifts:
        print(f"rewrote {drift.block.where}: {drift.command.splitlines()[0]}")
    print(f"{len(drifts)} sample output(s) regenerated")


if __name__ == "__main__":
    main()
