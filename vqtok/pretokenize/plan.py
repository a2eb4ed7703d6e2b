"""The resumable state of a store: work units, which are finished, what a run must do, and the final merge.

A run splits the inputs not yet in the store into units of ``unit_items`` inputs (in sorted order) and appends them
to plan.jsonl before any work starts. A unit is finished when parts/UNIT.jsonl exists (written after its shards).
A rerun first finishes the units an earlier run left unfinished, exactly as they were planned, so a killed and
resumed run writes the same shards, offsets and manifest as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from vqtok.errors import ConfigError, FileFormatError
from vqtok.store.layout import (
    ERRORS_FILE,
    MANIFEST_FILE,
    PARTS_DIR,
    PLAN_FILE,
    SHARDS_DIR,
    ErrorRecord,
    ItemRecord,
    StoreMeta,
    part_records,
    read_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
)

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"  # the units of the current run, in order: every rank reads its share from here


@dataclass(frozen=True)
class Unit:
    name: str  # "u0000042": also the name of its part file and the prefix of its shards
    sources: list[str]


@dataclass(frozen=True)
class Plan:
    """What a run does, decided by rank 0 before any work starts."""

    units: list[Unit]  # units this run processes: unfinished ones from earlier runs first, then new ones
    requested: int  # inputs named on the command line
    already_stored: int  # of those, already in the store
    failed_before: int  # of those, recorded as failed by an earlier run and not retried
    resumed_units: int  # units left unfinished by an earlier run


def open_store(store: Path, meta: StoreMeta) -> None:
    """Create the store, or check that an existing one was made by the same model and preprocessing."""
    if (store / "store.json").exists():
        check_store(store, meta)
        make_dirs(store)
        return
    if store.exists() and not store.is_dir():
        raise ConfigError(f"the output {store} exists and is not a directory")
    if store.is_dir() and any(p for p in store.iterdir() if not p.name.startswith(".")):
        raise ConfigError(f"{store} is a non-empty directory that is not a token store; choose a new --out")
    store.mkdir(parents=True, exist_ok=True)
    meta.save(store)  # first: a kill right after leaves a store, not a "non-empty directory"
    make_dirs(store)


def make_dirs(store: Path) -> None:
    for sub in (store / PARTS_DIR, store / SHARDS_DIR):
        sub.mkdir(exist_ok=True)


def check_store(store: Path, meta: StoreMeta) -> None:
    """Refuse to add to a store made by another model, or with another resolution policy."""
    old = StoreMeta.load(store)
    if old.model_fingerprint != meta.model_fingerprint:
        raise ConfigError(
            f"{store} holds ids from model {old.model!r} (fingerprint {old.model_fingerprint}); the model given "
            f"is {meta.model!r} ({meta.model_fingerprint}). Ids of different models cannot share a store: "
            "choose another --out"
        )
    if old.preprocess != meta.preprocess:
        raise ConfigError(
            f"{store} was made with preprocessing {json.dumps(old.preprocess)}, not {json.dumps(meta.preprocess)}; "
            "use the same --resize/--crop/--max-frames or another --out"
        )


def plan_run(store: Path, sources: list[str], unit_items: int, retry_failed: bool) -> Plan:
    """Append units for the new inputs to plan.jsonl and write run.json (rank 0 only, before any work)."""
    units = read_plan(store)
    finished = finished_units(store)
    stored: set[str] = set()
    failed: set[str] = set()
    for name in sorted(finished):
        for r in part_records(store / PARTS_DIR / f"{name}.jsonl"):
            (stored if isinstance(r, ItemRecord) else failed).add(r.source)
    failed -= stored
    unfinished = [u for u in units if u.name not in finished]
    planned = {s for u in unfinished for s in u.sources}
    new = [s for s in sources if s not in stored and s not in planned and (retry_failed or s not in failed)]
    first = 1 + max((int(name[1:]) for name in finished | {u.name for u in units}), default=-1)
    new_units = [
        Unit(f"u{first + k:07d}", new[i : i + unit_items]) for k, i in enumerate(range(0, len(new), unit_items))
    ]
    if new_units:
        write_jsonl_atomic(store / PLAN_FILE, [{"unit": u.name, "sources": u.sources} for u in units + new_units])
    run_units = unfinished + new_units
    write_json_atomic(store / RUN_FILE, {"units": [u.name for u in run_units]})
    requested = set(sources)
    return Plan(
        units=run_units,
        requested=len(sources),
        already_stored=len(requested & stored),
        failed_before=0 if retry_failed else len(requested & (failed - planned)),
        resumed_units=len(unfinished),
    )


def read_plan(store: Path) -> list[Unit]:
    path = store / PLAN_FILE
    if not path.exists():
        return []
    rows = (cast("dict[str, Any]", d) for _, d in read_jsonl(path))  # as plan_run wrote them
    return [Unit(d["unit"], d["sources"]) for d in rows]


def run_units(store: Path) -> list[Unit]:
    """The units of the current run, as rank 0 planned them (every rank calls this after planning)."""
    if not (store / RUN_FILE).exists():
        raise ConfigError(
            f"{store / RUN_FILE} is missing on this node: rank 0 writes the plan there, so the store must be on a "
            "file system every node shares"
        )
    names = json.loads((store / RUN_FILE).read_text())["units"]
    by_name = {u.name: u for u in read_plan(store)}
    return [by_name[name] for name in names]


def finished_units(store: Path) -> set[str]:
    return {p.stem for p in (store / PARTS_DIR).glob("*.jsonl")}


def wait_for_units(store: Path, units: list[Unit], poll: float = 1.0) -> None:
    """Block until every unit has its part file (the other ranks write theirs on the shared store)."""
    missing = [u.name for u in units]
    waited = 0.0
    while missing:
        missing = [name for name in missing if not (store / PARTS_DIR / f"{name}.jsonl").exists()]
        if missing:
            if waited and waited % 60 < poll:
                logger.info("waiting for %d unit(s) from other ranks, e.g. %s", len(missing), missing[0])
            time.sleep(poll)
            waited += poll


def merge(store: Path) -> None:
    """Rebuild manifest.jsonl and errors.jsonl from every finished unit, and delete what no finished unit
    references (shards of units killed before they were committed, temporary files of killed writes).

    Raises:
        FileFormatError: a planned unit has no part file, or an input is stored twice (never deletes then).
    """
    finished = finished_units(store)
    unfinished = [u.name for u in read_plan(store) if u.name not in finished]
    if unfinished:
        raise FileFormatError(
            f"{store}: {len(unfinished)} planned unit(s) are unfinished (e.g. {unfinished[0]}); "
            "rerun the same command to finish them"
        )
    records: dict[str, ItemRecord] = {}
    errors: dict[str, ErrorRecord] = {}
    for part in sorted((store / PARTS_DIR).glob("*.jsonl")):
        for r in part_records(part):
            if isinstance(r, ItemRecord):
                if r.source in records:
                    raise FileFormatError(f"{store}: {r.source} is stored twice ({records[r.source].shard}, {r.shard})")
                records[r.source] = r
            else:
                errors[r.source] = r  # a later unit's failure replaces an earlier one
    write_jsonl_atomic(store / MANIFEST_FILE, [records[s].to_json() for s in sorted(records)])
    meta = StoreMeta.load(store)
    if meta.labelled:  # the class names of the stored items (a store extended with new classes gains them)
        classes = sorted({r.label for r in records.values() if r.label is not None})
        if classes != meta.classes:
            replace(meta, classes=classes).save(store)
    write_jsonl_atomic(store / ERRORS_FILE, [vars(errors[s]) for s in sorted(errors) if s not in records])
    referenced = {r.shard for r in records.values()}
    for path in (store / SHARDS_DIR).glob("*.safetensors"):
        if f"{SHARDS_DIR}/{path.name}" not in referenced and path.name.split("-")[0] in finished:
            path.unlink()
    for directory in (store, store / PARTS_DIR, store / SHARDS_DIR):
        for path in directory.glob(".*.tmp"):
            path.unlink()


def count_results(store: Path, units: list[Unit]) -> tuple[int, int]:
    """(stored, failed) inputs in the given finished units."""
    stored = failed = 0
    for unit in units:
        for r in part_records(store / PARTS_DIR / f"{unit.name}.jsonl"):
            stored += isinstance(r, ItemRecord)
            failed += isinstance(r, ErrorRecord)
    return stored, failed


def lock_store(store: Path) -> int:
    """Take an exclusive lock on the store for this process's lifetime (released by the OS even on kill -9)."""
    import fcntl

    fd = os.open(store / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"{store} is being written by another vqtok tokenize job; wait for it to finish") from None
    return fd
