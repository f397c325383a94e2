"""The seeds' claims (CLAIMS.md, C1-C21) as experiments, the experiments beyond them (X1: trainable
depth against mean-field theory; X2, X3: Glorot & Bengio 2010's saturation dynamics and Table 1), and
the runner that executes them.

Each module of this package tests one claim or a tight group of claims (see ``claim.py`` for
what a module defines). ``reproduce`` runs the modules that cover the requested claims, in
parallel processes when asked, and returns one record per claim; ``report.write`` turns the
records into ``claims.json`` and ``report.html``.

Every experiment runs with one torch thread, in this process or in a worker, so the same seed
gives the same numbers whatever the number of processes (the C6 timings excepted: they are
measured times).
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib import import_module
from pathlib import Path
from types import ModuleType

from .. import jsontext
from ..folders import output_folder
from ..store import write_atomic, write_json
from .claim import Claim, Size, Verdict, rounded

# in claim order; each covers the claims listed in its CLAIMS
MODULES = ("activation_shapes", "vanishing", "clipping", "centring", "dead_units", "optimisers", "zero_init",
           "init_depth", "glorot", "lr_schedules", "recommendation", "trainability", "saturation", "table_one")
SLOW = ("recommendation", "trainability", "dead_units", "lr_schedules", "table_one", "saturation", "centring", "optimisers")  # longest first (quick size)
TIMED = ("activation_shapes",)  # C6 times the activations: run alone, never beside a busy worker
MARKER = "reproduce.json"  # written first into the output folder: marks it as ours to rewrite

__all__ = ["Claim", "Size", "Verdict", "MODULES", "load", "claim_ids", "select", "run_one", "reproduce", "prepare_folder"]


def load(name: str) -> ModuleType:
    """The experiment module called ``name``."""
    if name not in MODULES:
        raise ValueError(f"unknown experiment {name!r}; expected one of {', '.join(MODULES)}")
    return import_module(f".{name}", __name__)


def claim_ids() -> dict[str, str]:
    """Claim id -> the experiment module that tests it, in claim-number order."""
    index = {c.id: name for name in MODULES for c in load(name).CLAIMS}
    return dict(sorted(index.items(), key=lambda kv: claim_order(kv[0])))


def claim_order(claim_id: str) -> tuple[bool, int]:
    """The seeds' claims C1-C21 by number, then the experiments beyond them (X1, ...)."""
    return not claim_id.startswith("C"), int(claim_id[1:])


def _wanted(only: str | list[str]) -> list[str]:
    """Claim ids from "C7, c15" or ["C7", "C15"], upper-cased."""
    return [s.strip().upper() for s in (only.split(",") if isinstance(only, str) else only) if s.strip()]


def select(only: str | list[str] | None) -> list[str]:
    """The experiment modules that cover the claims in ``only`` ("C7,C15" or a list); all when None."""
    if only is None:
        return list(MODULES)
    wanted = _wanted(only)
    index = claim_ids()
    unknown = [w for w in wanted if w not in index]
    if unknown or not wanted:
        raise ValueError(f"--only {','.join(unknown) or repr(only)}: expected claim ids among "
                         f"{', '.join(index)} (comma-separated)")
    names = {index[w] for w in wanted}
    return [m for m in MODULES if m in names]


def prepare_folder(out: str | Path, meta: dict, *, resume: bool = False) -> Path:
    """The output folder, new or empty or written by an earlier ``reproduce``; other folders are refused.
    With ``resume`` it must be one written by ``reproduce`` with the same ``quick`` and ``seed``."""
    folder = output_folder(out)  # a new folder is empty
    marker = folder / MARKER
    if any(folder.iterdir()) and not marker.exists():
        raise ValueError(f"--out {str(out)!r} holds files that reproduce did not write; give a new or empty folder")
    if resume:
        try:
            stored = json.loads(marker.read_text())
        except (OSError, ValueError):
            raise ValueError(f"--resume: {str(out)!r} has no readable {MARKER}; it is not a reproduce folder") from None
        for key in ("quick", "seed"):
            if stored.get(key) != meta[key]:
                raise ValueError(f"--resume continues the stored catalog, whose {key} is fixed: stored "
                                 f"{key}={stored.get(key)!r}, given {key}={meta[key]!r}")
    write_json(marker, meta)
    return folder


def _command(claim_id: str, quick: bool, seed: int) -> str:
    return f"gradientflow reproduce --only {claim_id} --seed {seed}{' --quick' if quick else ''} --out DIR"


def _header(name: str, size: Size, quick: bool, seed: int) -> dict:
    """What a stored measurement must have been made with to stand for this run of experiment ``name``."""
    return {"experiment": name, "size": size.model_dump(mode="json"), "quick": quick, "seed": seed}


def _stored(out: Path, name: str, header: dict) -> dict | None:
    """The measurements an earlier ``reproduce`` stored for ``name`` (``data/<name>.json``), when the file
    reads and was made with the same size, quick and seed; else None (the experiment runs again)."""
    try:
        stored = jsontext.loads((out / "data" / f"{name}.json").read_text(), exact=True)
    except (OSError, ValueError):
        return None
    ok = isinstance(stored, dict) and isinstance(stored.get("measured"), dict) and \
        all(stored.get(k) == v for k, v in header.items()) and isinstance(stored.get("seconds"), (int, float))
    return stored if ok else None


def run_one(name: str, *, quick: bool, seed: int, out: str | Path, resume: bool = False) -> dict:
    """Run one experiment module; save its figures and measurements under ``out``; return its records.

    The measurements go to ``data/<name>.json`` last (atomically, with the size and seed that made them),
    and the verdicts and figures are computed from what that file holds (JSON round trip, NaN kept), so
    that with ``resume`` a finished experiment is not run again: its stored measurements are checked
    against this size and seed and its verdicts and figures computed afresh from them, the same as
    an uninterrupted run gives. An experiment that raises gives records with verdict "error" and the
    message: the other experiments still run and the report says what broke.
    """
    import torch

    from .. import plots

    out = Path(out)
    mod = load(name)
    size = mod.QUICK if quick else mod.FULL
    header = _header(name, size, quick, seed)
    stored = _stored(out, name, header) if resume else None
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if stored is None:
            folder = out / "runs" / name
            shutil.rmtree(folder, ignore_errors=True)  # this experiment's runs from an earlier (or killed) reproduce
            folder.mkdir(parents=True)
            with torch.random.fork_rng(devices=[]):  # the caller's global RNG state is left as it was
                torch.manual_seed(seed)
                measured = mod.run(size, seed, folder)
            stored = {**header, "seconds": time.perf_counter() - started, "measured": measured}
            text = jsontext.dumps(stored, exact=True, indent=1)  # standard JSON, non-finite numbers read back exactly
            stored = jsontext.loads(text, exact=True)
            fresh = True
        else:
            fresh = False
        verdicts = mod.verdicts(stored["measured"])
        figures = mod.figures(stored["measured"])
    except Exception as err:  # noqa: BLE001 - one broken experiment must not hide the others
        message = f"{type(err).__name__}: {err}"
        return {"experiment": name, "seconds": time.perf_counter() - started, "records": [
            _record(c, name, size, quick, seed, None, message=message) for c in mod.CLAIMS]}
    finally:
        torch.set_num_threads(threads)
    (out / "figures").mkdir(exist_ok=True)
    for stem, fig in figures.items():
        plots.save(fig, out / "figures", stem, formats=("png",))
    if fresh:  # last: its presence says the experiment finished
        (out / "data").mkdir(exist_ok=True)
        write_atomic(out / "data" / f"{name}.json", lambda f: f.write(text.encode()))
    return {"experiment": name, "seconds": stored["seconds"], "kept": not fresh,
            "records": [_record(c, name, size, quick, seed, verdicts[c.id]) for c in mod.CLAIMS]}


def _record(claim: Claim, name: str, size: Size, quick: bool, seed: int, verdict: Verdict | None,
            message: str = "") -> dict:
    base = {"id": claim.id, "claim": claim.text, "source": claim.source, "experiment": name}
    size = size.model_dump(mode="json")
    if verdict is None:
        return {**base, "verdict": "error", "numbers": {}, "threshold": "", "why": message, "figure": None,
                "config": {"size": size, "seed": seed, "quick": quick}, "command": _command(claim.id, quick, seed)}
    return {**base, "verdict": "pass" if verdict.passed else "fail", "numbers": rounded(verdict.numbers, 4),
            "threshold": verdict.threshold, "why": verdict.why,
            "figure": f"figures/{verdict.figure}.png" if verdict.figure else None,
            "config": {"size": size, "seed": seed, "quick": quick}, "command": _command(claim.id, quick, seed)}


def reproduce(out: str | Path, *, only: str | list[str] | None = None, quick: bool = False, seed: int = 0,
              jobs: int = 1, progress: bool = False, resume: bool = False) -> dict:
    """Run the experiments covering ``only`` (all claims when None) and return their records.

    ``jobs`` > 1 runs experiments in that many worker processes. ``resume`` continues a killed
    ``reproduce`` in ``out`` (same ``quick`` and ``seed``): experiments whose measurements were stored
    are not run again (``run_one``). Returns ``{"claims": [record, ...] in claim order, "seconds":
    {experiment: s}, "kept": [experiments not run again], "wall_seconds": s}``.
    """
    from tqdm import tqdm

    names = select(only)
    wanted = None if only is None else set(_wanted(only))
    out = prepare_folder(out, {"only": only, "quick": quick, "seed": seed}, resume=resume)
    started = time.perf_counter()
    results = []
    bar = tqdm(total=len(names), disable=not progress, unit="experiment", dynamic_ncols=True)
    # an experiment that times the machine runs alone, before the workers start: beside a busy worker its
    # timings at every core's thread would measure the contention
    alone = [n for n in names if n in TIMED]
    rest = [n for n in names if n not in alone]
    serial, parallel = (alone + rest, []) if jobs <= 1 or len(rest) <= 1 else (alone, rest)
    try:
        for name in serial:
            bar.set_description(name)
            results.append(run_one(name, quick=quick, seed=seed, out=out, resume=resume))
            bar.update(1)
        if parallel:
            context = multiprocessing.get_context("spawn")  # no forked torch state in the workers
            with ProcessPoolExecutor(max_workers=min(jobs, len(parallel)), mp_context=context) as pool:
                first = sorted(parallel, key=lambda n: SLOW.index(n) if n in SLOW else len(SLOW))  # longest first
                futures = {pool.submit(run_one, name, quick=quick, seed=seed, out=out, resume=resume): name
                           for name in first}
                for future in as_completed(futures):
                    results.append(future.result())
                    bar.set_description(futures[future])
                    bar.update(1)
    finally:
        bar.close()
    records = [r for res in results for r in res["records"] if wanted is None or r["id"] in wanted]
    return {"claims": sorted(records, key=lambda r: claim_order(r["id"])),
            "seconds": {res["experiment"]: round(res["seconds"], 2) for res in results},
            "kept": sorted(res["experiment"] for res in results if res.get("kept")),
            "wall_seconds": round(time.perf_counter() - started, 2)}
