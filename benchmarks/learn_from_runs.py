"""Does learning from the searches that ran make the next search's number right?

A search minimises predicted latency, so it steers towards the cells the predictor
under-predicts: the derived network lands where the dataset is thinnest. `lenna measure
--from-run` is the remedy the docs give (label the run's derived cells and α snapshots, then
retrain). This script runs that loop as a user would, on a copy of the shipped dataset:

    round r: train the predictor on the copy → search (same seed and λ every round) →
             `evaluate-arch` (the network measured for real) → `lenna measure --from-run`
             into the copy

and prints, per round, each derived cell's predicted against measured time (the number the
user acts on), the whole network's, the measured latency and the accuracy.

    python benchmarks/learn_from_runs.py --space lenna --backend onnxruntime --rounds 3
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics as st
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import torch

from lenna.measure.fingerprint import config_fingerprint, same_machine
from lenna.measure.run_config import RunConfig, stored_config, upgrade_config
from lenna.measure.store import Dataset
from lenna.predict import load_data as load_latency_data
from lenna.predict import train_predictor
from lenna.predict.io import load_predictor, save_predictor
from lenna.search.config import SearchConfig
from lenna.search.datasets import load_data
from lenna.search.genotype import Genotype
from lenna.search.network import NetConfig
from lenna.search.run import run_search
from lenna.search.timing import measured_as
from lenna.search.verify import evaluate_arch, measure_config_for

sys.path.insert(0, str(Path(__file__).parent))
from _datasets import SHIPPED
from _record import publish


def copy_dataset(src: Path, dst: Path) -> None:
    """A consistent copy of a dataset (SQLite's backup: a WAL still open is included)."""
    if dst.exists():
        return
    tmp = dst.with_suffix(".part")
    tmp.unlink(missing_ok=True)
    src_uri = f"file:{src}?mode=ro"
    with closing(sqlite3.connect(src_uri, uri=True)) as a, closing(sqlite3.connect(tmp)) as b:
        a.backup(b)
        b.execute("pragma journal_mode=delete")
    tmp.replace(dst)


def rows(path: Path) -> int:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as c:
        return c.execute("select count(*) from samples").fetchone()[0]


def check_addable(path: Path) -> None:
    """Exit before any search when ``--from-run`` could not add to ``path`` here (labels of
    another machine or timed another way): the loop would stop after its first search."""
    with Dataset.open(path, readonly=True) as ds:
        meta, have = ds.meta, ds.fingerprints()
    cfg = RunConfig.from_dict(upgrade_config(stored_config(meta) or {}))
    here = config_fingerprint(cfg.measure)
    if not any(same_machine(f, here) for f in have.values()):
        raise SystemExit(
            f"{path} was measured on another machine or setting than this one, so "
            "`lenna measure --from-run` cannot add to it: pass --predictor-data with a file "
            "measured here"
        )


def from_run(db: Path, run: Path) -> str:
    """`lenna measure --out DB --from-run RUN`, as the user runs it; its last line."""
    cmd = [sys.executable, "-c", "from lenna.cli import main; main()", "measure",
           "--out", str(db), "--from-run", str(run)]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"lenna measure --from-run failed:\n{p.stderr}")
    return p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""


def one_round(args: argparse.Namespace, r: int, db: Path, data: tuple) -> dict:
    folder = args.out / f"round{r}"
    pred = folder / f"predictor-{args.kind}"
    folder.mkdir(parents=True, exist_ok=True)
    n_rows = rows(db)
    if not (pred / "model.json").is_file():
        print(f"round {r}: training {args.kind} on {n_rows} rows of {db}", flush=True)
        lat = load_latency_data(db, include_flagged=True)
        save_predictor(train_predictor(lat, args.kind, seed=0), pred)
    model = load_predictor(pred, space=args.space)
    run = folder / "run"
    cfg = SearchConfig(
        space=args.space, data=args.data, limit=args.limit, epochs=args.epochs,
        warmup=args.warmup, batch=args.batch, mode=args.mode, net=NetConfig(), a_lr=3e-3,
        lam=args.lam, seed=args.seed, predictor=str(pred),
    )  # fmt: skip
    if (run / "genotype.json").is_file():
        g = Genotype.load(run / "genotype.json")
    else:
        print(f"round {r}: search λ {args.lam:g} seed {args.seed} -> {run}", flush=True)
        resume = (run / "config.json").is_file()
        g = run_search(cfg, run, resume=resume, data=data[0], figures=False).genotype
    if (folder / "result.json").is_file():
        res = json.loads((folder / "result.json").read_text())
    else:
        g.info["measured_as"] = measured_as(model)  # as the run recorded it, made explicit
        torch.set_num_threads(2)
        measure = measure_config_for(g, threads=1, backend=args.backend)
        res = evaluate_arch(g, data[1], args.eval_epochs, args.seed, measure=measure)
        res["rows"] = n_rows
        res["held_out_mape"] = model.info["metrics"]["held_out"]["mape"]
        (folder / "result.json").write_text(json.dumps(res, indent=2))
    if not (folder / "from_run.txt").is_file():
        line = from_run(db, run)
        print(f"round {r}: {line}", flush=True)
        (folder / "from_run.txt").write_text(line + "\n")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--space", default="lenna", choices=["lenna", "darts"])
    ap.add_argument("--backend", default="onnxruntime", choices=["torch", "onnxruntime"])
    ap.add_argument("--predictor-data", type=Path, help="dataset to start from (a copy is used)")
    ap.add_argument("--kind", default="additive")
    ap.add_argument("--lam", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--mode", default="weighted")
    ap.add_argument("--eval-epochs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("/tmp/lenna-learn-from-runs"))
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    src = args.predictor_data or SHIPPED[(args.space, args.backend)]
    db = args.out / "dataset.db"
    check_addable(src)
    copy_dataset(src, db)
    data = (
        load_data(args.data, seed=args.seed, limit=args.limit),
        load_data(args.data, seed=args.seed),
    )
    results = [one_round(args, r, db, data) for r in range(args.rounds)]

    lines = [
        f"`{args.space}` space, {args.backend} labels, predictor `{args.kind}` trained on a copy "
        f"of {src.name}; every round the same search (`{args.data}`, {args.limit} images, "
        f"{args.epochs} epochs, {args.warmup} warm-up, batch {args.batch}, {args.mode}, "
        f"λ = {args.lam:g}, seed {args.seed}), `evaluate-arch` ({args.eval_epochs} epochs, "
        f"measured in {args.backend} at the dataset's speed), then `lenna measure --from-run` "
        "into the copy.",
        "",
        "| round | rows | held-out MAPE | cells predicted / measured ms | each cell's error "
        "| network predicted / measured ms | error | accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r, res in enumerate(results):
        errs = _errors(res)
        lines.append(
            f"| {r} | {res['rows']} | {res['held_out_mape']:.1f} % | "
            f"{res['predicted_ms']:.3f} / {res['measured_cells_ms']:.3f} | "
            f"{', '.join(f'{e:+.1f} %' for e in errs)} | "
            f"{res['predicted_network_ms']:.3f} / {res['measured_ms']:.3f} | "
            f"{100 * res['network_prediction_error']:+.1f} % | {100 * res['accuracy']:.2f} % |"
        )
    lines.append("")
    for r, res in enumerate(results):
        e = [abs(x) for x in _errors(res)]
        lines.append(
            f"- round {r}: derived cells, median |error| {st.median(e):.1f} %, worst "
            f"{max(e):.1f} %; network {100 * res['network_prediction_error']:+.1f} %"
        )
    publish(
        f"Learning from the searches that ran ({args.space}, {args.backend})",
        results[0]["fingerprint"],
        lines,
        save=not args.no_record,
    )


def _errors(res: dict) -> list[float]:
    return [
        (p - m) / m * 100
        for p, m in zip(res["predicted_per_cell_ms"], res["measured_per_cell_ms"], strict=True)
    ]


if __name__ == "__main__":
    main()
