"""How long the ``eventmap`` command takes to start, against a bare ``python -c pass`` (issue 26).

    python bench/bench_cli_start.py [--rounds 30] [--against REF]

Each command is run as the installed console script runs it (``from engine.cli
import main``), in a fresh interpreter, from this checkout (PYTHONPATH) with the
checkout as the working folder, so ``validate`` checks ./mappings as a user in a
clone does. Rounds are interleaved: every round runs the baseline and every
command once (and, with ``--against REF``, every command from REF, exported with
``git archive`` into a temporary folder), in a shuffled order, so noise from the
shared machine falls on all of them alike. Reported: the median wall time of each,
and the median of its per-round ratios to the baseline of the same round.

Targets: ``--version`` and ``--help`` within 3x the baseline; ``validate`` and
``render`` well under 0.3 s.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "import sys; from engine.cli import main; sys.exit(main())"   # what pip's console script does
EVENT = "fixtures/events/track-order-completed.json"
COMMANDS = {
    "--version": ["--version"],
    "--help": ["--help"],
    "validate": ["validate"],
    "render": ["render", "planhat", EVENT, "--settings", '{"tenant_token": "bench"}'],
}


@contextmanager
def exported(ref: str):
    """``ref``'s files in a temporary folder (git archive: no worktree, nothing left behind)."""
    folder = Path(tempfile.mkdtemp(prefix="eventmap-bench-"))
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], check=True,
                                 capture_output=True).stdout
        with tempfile.TemporaryFile() as tar:
            tar.write(archive)
            tar.seek(0)
            with tarfile.open(fileobj=tar) as files:
                files.extractall(folder, filter="data")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def timed(command: list[str], tree: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # PYTHONDONTWRITEBYTECODE would make every run compile the engine from source: pip writes the
    # .pyc files when it installs, and the first (untimed) run writes them here
    env = {k: v for k, v in env.items() if not k.startswith("EVENTMAP_") and k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} in {tree} failed ({done.returncode}):\n{done.stderr.decode()}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--against", metavar="REF", help="also time the commands from this git ref (e.g. cc188b1)")
    args = parser.parse_args()
    with exported(args.against) if args.against else nullcontext() as old:
        trees = {"this tree": ROOT, **({f"at {args.against}": old} if old else {})}
        runs = [("python -c pass", ROOT, [sys.executable, "-c", "pass"])]
        runs += [(f"{name} ({label})", tree, [sys.executable, "-c", SCRIPT, *argv])
                 for label, tree in trees.items() for name, argv in COMMANDS.items()]
        for _, tree, command in runs:   # once each first: .pyc files written, caches warm
            timed(command, tree)
        times: dict[str, list[float]] = {name: [] for name, _, _ in runs}
        ratios: dict[str, list[float]] = {name: [] for name, _, _ in runs}
        for _ in range(args.rounds):
            order = random.sample(runs, len(runs))
            took = {name: timed(command, tree) for name, tree, command in order}
            for name in took:
                times[name].append(took[name])
                ratios[name].append(took[name] / took["python -c pass"])
    print(f"{args.rounds} rounds, interleaved; wall time per run (median, 90th percentile) and the median of "
          f"the per-round ratios to python -c pass")
    for name, _, _ in runs:
        ordered = sorted(times[name])
        p90 = statistics.quantiles(ordered, n=10)[-1] if len(ordered) > 1 else ordered[0]
        print(f"  {name:32} {statistics.median(ordered) * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms  "
              f"{statistics.median(ratios[name]):5.2f}x")


if __name__ == "__main__":
    main()
