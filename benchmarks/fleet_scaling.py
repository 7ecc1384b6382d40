"""Scale-out by simulation: N measuring actors whose "device" is a calibrated sleep.

This machine has 2 cores, so real devices are simulated: each actor sleeps ``--sample-s``
per sample (rows carry a fingerprint marked ``simulated``) and the driver does its real work
(dispatch, SQLite commit per row). For N = 1, 2, 4, 8 on a local Ray cluster: throughput,
speed-up over N = 1 and the driver's own time per row. Target: speed-up ≥ 0.9 × N up to 8,
and the driver's time per row well under 10 ms (it must never be the bottleneck below
100 rows/s).

    python benchmarks/fleet_scaling.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import ray

from lenna.measure.fingerprint import fingerprint
from lenna.measure.fleet import RESOURCE, run_fleet_measurement
from lenna.measure.runner import RunConfig

sys.path.insert(0, str(Path(__file__).parent))
from _record import publish


def run(n_actors: int, samples: int, sample_s: float) -> dict:
    ray.init(
        num_cpus=2,
        resources={RESOURCE: n_actors},
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        stats: dict = {}
        with tempfile.TemporaryDirectory() as tmp:
            run_fleet_measurement(
                Path(tmp) / "d.db",
                RunConfig(space="lenna", drift_every=0),
                samples,
                "auto",
                simulate_s=sample_s,
                stats=stats,
            )
        return stats
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--sample-s", type=float, default=0.5)
    ap.add_argument("--per-actor", type=int, default=16, help="samples per actor")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    rows = []
    for n in args.actors:
        s = run(n, n * args.per_actor, args.sample_s)
        s["throughput"] = s["rows"] / s["measure_s"]
        rows.append(s)
        print(
            f"N={n}: {s['rows']} rows in {s['measure_s']:.2f} s = {s['throughput']:.2f} rows/s, "
            f"driver {1e3 * s['driver_s'] / s['rows']:.2f} ms/row",
            flush=True,
        )
    base = rows[0]["throughput"] / rows[0]["actors"]
    lines = [
        f"Simulated devices: {args.sample_s} s per sample, {args.per_actor} samples per actor, "
        "local Ray cluster on this machine; the driver commits every row to SQLite.",
        "",
        "| actors N | rows | wall s | rows/s | speed-up | speed-up / N | driver ms/row |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        up = s["throughput"] / base
        lines.append(
            f"| {s['actors']} | {s['rows']} | {s['measure_s']:.2f} | {s['throughput']:.2f} | "
            f"{up:.2f} | {up / s['actors']:.3f} | {1e3 * s['driver_s'] / s['rows']:.2f} |"
        )
    worst = min(s["throughput"] / base / s["actors"] for s in rows)
    driver_ms = max(1e3 * s["driver_s"] / s["rows"] for s in rows)
    lines += [
        "",
        f"- worst speed-up / N: {worst:.3f} (target ≥ 0.9: {'met' if worst >= 0.9 else 'NOT met'})",
        f"- driver time per row, worst: {driver_ms:.2f} ms → the driver alone could commit "
        f"{1e3 / driver_ms:.0f} rows/s (target: not the bottleneck below 100 rows/s: "
        f"{'met' if driver_ms < 10 else 'NOT met'})",
    ]
    publish(
        "Fleet scaling (Ray, simulated devices)",
        fingerprint("cpu", 1, simulated=True),
        lines,
        save=not args.no_record,
    )


if __name__ == "__main__":
    main()
