"""raw files → a dataset's reader → builder → `write_dataset`: the one build every dataset module's
`preprocess` runs (dinctl/data/datasets/), with the input hashes overlapping the work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dinctl.data import builder, readers
from dinctl.data.download import recorded_sha256
from dinctl.data.reporting import Status, Warn, split_warnings
from dinctl.data.store import dataset_meta, write_dataset
from dinctl.fsutil import check_disjoint, check_output_dir, sha256_file
from dinctl.locks import folder_lock


def _sha256(path: Path) -> str:
    """The input's sha256: the one MANIFEST.json recorded when the file is unchanged since,
    else hashed (streamed)."""
    recorded = recorded_sha256(path)
    return recorded if recorded is not None else sha256_file(path)


class _Rebuild(Exception):  # noqa: N818 - control flow, never shown
    """The meta file drops reviewed items: build again from the reviews that are kept."""

    def __init__(self, inter: readers.Interactions) -> None:
        super().__init__()
        self.inter = inter


def build_dataset(
    read: Callable[[Executor], readers.Interactions | readers.PendingInteractions],
    out: Path,
    *,
    inputs: list[tuple[str, Path]],
    dataset: str,
    protocol: str,
    seed: int,
    valid: bool,
    overwrite: bool,
    options: dict[str, Any],
    status: Status,
    warn: Warn,
) -> dict[str, Any]:
    """`read(pool)` the raw `inputs`, build the samples by `protocol` ("windows": sliding
    windows and drawn negatives; "users": labelled rows, users split), write `out`; returns the
    counts."""
    with output_folder(out, inputs, overwrite):
        build = builder.build_windows if protocol == "windows" else builder.build_user_split
        # threads: the meta parse (Amazon) and the input hashes overlap the reading and building
        # (Polars, numpy and hashlib release the GIL)
        with ThreadPoolExecutor(max_workers=2) as pool:
            with status(f"reading {dataset}"):
                got = read(pool)
            inter, built, digests = _samples(got, pool, build, seed=seed, valid=valid,
                                             status=status)  # fmt: skip

            def late_inputs() -> dict[str, Any]:
                return {
                    "inputs": [
                        {"name": p.name, "bytes": p.stat().st_size, "sha256": d.result()}
                        for p, d in zip(inter.inputs, digests, strict=True)
                    ]
                }

            return write_built(
                out,
                built,
                dataset=dataset,
                seed=seed,
                valid=valid,
                overwrite=overwrite,
                options=options,
                dropped=inter.dropped,
                warnings=inter.warnings,
                inputs=None,  # filled once the hashes are done: they overlap the writing too
                late_meta=late_inputs,
                status=status,
                warn=warn,
            )


@contextmanager
def output_folder(out: Path, inputs: list[tuple[str, Path]], overwrite: bool) -> Iterator[None]:
    """The start of every dataset's build: `out` apart from its inputs, locked, and empty (or
    `overwrite`), all checked before the long work, not after it."""
    check_disjoint(out, inputs)  # before anything is touched: --out must not be an input
    with folder_lock(out, what="dataset"):
        check_output_dir(out, overwrite)
        yield


def write_built(
    out: Path,
    built: builder.Built,
    *,
    dataset: str,
    seed: int,
    valid: bool,
    overwrite: bool,
    options: dict[str, Any],
    dropped: dict[str, int],
    warnings: tuple[str, ...],
    inputs: list[dict[str, Any]] | None,
    late_meta: Callable[[], dict[str, Any]] | None,
    status: Status,
    warn: Warn,
) -> dict[str, Any]:
    """The end of every dataset's build: report the reader's and the splits' warnings, write
    `built` and its meta.json into `out` (`late_meta` adds keys once the samples are written);
    returns the counts."""
    every = [*warnings, *split_warnings(built.summary, out)]
    for message in every:
        warn(message)
    meta = dataset_meta(
        dataset,
        built.summary,
        dropped=dropped,
        vocab=built.vocab,
        seed=seed,
        valid=valid,
        options=options,
        inputs=inputs,
        warnings=every,
    )
    with status(f"writing {out}"):
        write_dataset(
            out,
            meta=meta,
            items=built.items,
            sequences=built.sequences,
            splits=built.splits,
            overwrite=overwrite,
            late_meta=late_meta,
            schema=built.schema,
            users=built.users,
            values=built.values,
        )
    counts: dict[str, Any] = meta["counts"]
    return counts


def _samples(
    got: readers.Interactions | readers.PendingInteractions,
    pool: Executor,
    build: Callable[..., tuple[builder.Built, Any]],
    *,
    seed: int,
    valid: bool,
    status: Status,
) -> tuple[readers.Interactions, builder.Built, list[Future[str]]]:
    """The samples of what `read` gave, and the input hashes started on `pool`. A pending read
    (Amazon's) builds while its rest (the meta file) is parsed, and again if that drops items."""
    built: builder.Built | None = None
    if isinstance(got, readers.PendingInteractions):
        pending = got

        def item_cate() -> Any:
            resolved = pending.resolve()
            if resolved.dropped:  # rare: ids and sequences change, start again
                raise _Rebuild(resolved)
            return resolved.item_cate

        digests = [pool.submit(_sha256, p) for p in pending.inputs]
        try:
            with status("building samples"):
                built, _ = build(pending.frame, seed=seed, valid=valid, item_cate=item_cate)
            inter = pending.resolve()
        except _Rebuild as again:
            inter = again.inter
    else:
        inter = got
        digests = [pool.submit(_sha256, p) for p in inter.inputs]
    if built is None:
        with status("building samples"):
            built, _ = build(
                inter.frame,
                seed=seed,
                valid=valid,
                item_cate=inter.item_cate,
                user_features=inter.user_features,
            )
    return inter, built, digests
