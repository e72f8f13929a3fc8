"""Run the jaxreg benchmark suite: ``python -m benchmarks [--quick] [--only NAME,...] [--render JSON]``.

Each module listed in ``SUITE`` exposes ``run(quick: bool) -> list[Result]``. The runner prints one table,
writes ``benchmarks/results/<host>-<date>.json`` and rewrites ``benchmarks/RESULTS.md``. A module whose
optional baseline is not installed reports that in its rows' notes (or is skipped with a note) instead of
failing the suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import socket
import sys
import traceback
from pathlib import Path

import jax

from benchmarks._timing import Result

# Order matters only for the report: micro first, then steps, then whole programs.
SUITE = ("noise", "norm", "augment", "penalties", "conv", "train_step", "engine_options", "epoch", "sweep",
         "checkpoint", "multiprocess")
HERE = Path(__file__).resolve().parent


def environment() -> dict:
    """Versions, device and core count recorded beside every figure."""
    import flax
    import optax

    env = {
        "host": socket.gethostname(),
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or __import__("jaxlib").__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        # Other processes on the cores change everything here (a step ran 3x slower at load 4 than at 1):
        # the 1-minute load average when the run started, for reading the figures.
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    for opt in ("torch", "keras"):
        # Read versions from metadata: importing torch here (before OMP_WAIT_POLICY is set by its benchmark)
        # leaves OpenMP threads spin-waiting, and keras needs KERAS_BACKEND before its first import.
        try:
            env[opt] = importlib.metadata.version(opt)
        except importlib.metadata.PackageNotFoundError:  # optional baselines: absence is recorded, not fatal
            env[opt] = None
    return env


def format_table(rows: list[Result]) -> str:
    head = "| benchmark | case | ours | reference | ours (ms) | ref (ms) | ratio | target | met | note |"
    sep = "|---|---|---|---|---:|---:|---:|---|---|---|"
    lines = [head, sep]
    for r in rows:
        target = "" if r.target is None else f"{'>=' if r.higher_is_better else '<='} {r.target:g}"
        met = {True: "yes", False: "**no**", None: ""}[r.met]
        lines.append(
            f"| {r.benchmark} | {r.case} | {r.ours} | {r.ref} | {r.ours_s * 1e3:.3f} | {r.ref_s * 1e3:.3f} "
            f"| {r.ratio:.3f} | {target} | {met} | {r.note} |"
        )
    return "\n".join(lines)


def write_results_md(env: dict, rows: list[Result], failures: dict[str, str], out: Path = HERE / "RESULTS.md") -> None:
    """Rewrite ``out`` (``benchmarks/RESULTS.md``): the environment, the table, failures, then ``NOTES.md``."""
    md = [
        "# jaxreg benchmark results",
        "",
        "Written by `make bench` (`python -m benchmarks`). Every ratio is ours / reference, both measured",
        "in the same process, interleaved, medians after warm-up (lower is better unless the target says",
        "`>=`). Absolute times are context only: these machines are noisy.",
        "",
        "Environment: " + ", ".join(f"{k}={v}" for k, v in env.items() if k != "host"),
        "",
        format_table(rows),
        "",
    ]
    if failures:
        md += ["Skipped or failed:", ""] + [f"- `{n}`: {w.strip().splitlines()[-1]}" for n, w in failures.items()]
    notes = HERE / "NOTES.md"
    if notes.exists():
        md += ["", notes.read_text()]
    out.write_text("\n".join(md) + "\n")


def render(path: Path, out: Path = HERE / "RESULTS.md") -> None:
    """Rebuild ``out`` from a results JSON written by an earlier run (after editing ``NOTES.md``)."""
    payload = json.loads(path.read_text())
    fields = {f.name for f in dataclasses.fields(Result)}
    rows = [Result(**{k: v for k, v in d.items() if k in fields}) for d in payload["results"]]
    write_results_md(payload["environment"], rows, payload.get("failures", {}), out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and sizes (a smoke run)")
    parser.add_argument("--only", default="", help="comma-separated subset of: " + ",".join(SUITE))
    parser.add_argument("--no-write", action="store_true", help="print only; do not write results files")
    parser.add_argument("--render", metavar="JSON", type=Path,
                        help="run nothing; rebuild RESULTS.md from this results file and the current NOTES.md")
    args = parser.parse_args(argv)
    if args.render is not None:
        render(args.render)
        return 0
    names = [n for n in args.only.split(",") if n] or list(SUITE)
    unknown = sorted(set(names) - set(SUITE))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(SUITE)}")

    env = environment()
    print(f"# jaxreg benchmarks on {env['device_kind']} ({env['cpu_count']} cores), jax {env['jax']}", flush=True)
    load, cores = env["load_avg_1min"], env["cpu_count"] or 1
    if load is not None and load > cores / 2:
        print(f"warning: load average {load} on {cores} cores: other processes will skew these figures "
              "(benchmarks/NOTES.md, section 0)", file=sys.stderr, flush=True)
    rows: list[Result] = []
    failures: dict[str, str] = {}
    for name in names:
        if not (HERE / f"{name}.py").exists():
            failures[name] = "not present in this checkout"
            continue
        print(f"## {name} ...", file=sys.stderr, flush=True)
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
            rows.extend(mod.run(quick=args.quick))
        except Exception:  # one broken benchmark must not hide the others' figures
            failures[name] = traceback.format_exc(limit=3)
            print(failures[name], file=sys.stderr)
    if hasattr(os, "getloadavg"):
        env["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
    table = format_table(rows)
    print(table)
    for name, why in failures.items():
        print(f"\n{name}: FAILED or skipped\n{why}")
    if not args.no_write:
        out = HERE / "results" / f"{env['host']}-{env['date']}{'-quick' if args.quick else ''}.json"
        out.parent.mkdir(exist_ok=True)
        payload = {"environment": env, "quick": args.quick, "results": [r.asdict() for r in rows],
                   "failures": failures}
        out.write_text(json.dumps(payload, indent=2) + "\n")
        write_results_md(env, rows, failures)
        print(f"\nwrote {out.relative_to(HERE.parent)} and benchmarks/RESULTS.md", file=sys.stderr)
    return 0  # a missed target is reported in the table, not an error: the figures are the product


if __name__ == "__main__":
    sys.exit(main())
