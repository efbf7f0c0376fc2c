"""Point-cloud autoencoders trained with different losses, one budget for all, compared on held-out shapes.

The protocol of "Self-Attention Amortized Distributional Projection Optimization for Sliced Wasserstein
Point-Cloud Reconstruction" (Nguyen, Nguyen & Ho, ICML 2023), on the clouds this machine has: every loss trains
the same :class:`geomot.models.PointNetAutoencoder` (same seed, epochs, batch size and learning rate) through
:func:`geomot.train.train_autoencoder`, and each is scored on the test split by

- Chamfer: ``geomot.chamfer_distance`` (squared distances, mean over each cloud, both directions);
- SW_2 x 100: ``geomot.sliced_wasserstein`` with ``L = 100`` directions from a fixed generator;
- EMD: the exact ``W_2`` (POT's network simplex, root of the optimal cost);

all between a test cloud (centred, scaled into the unit ball) and its reconstruction, averaged over the test
clouds, together with the seconds per training epoch (mean over epochs, all losses in this one process).

Data (read in place from ``../shared/data``; a split copy of the ShapeNet rows is written to a temporary folder
outside the project): ShapeNet-55 clouds (rows 40-49 held out), the meshes of FAUST_r (subject 7, shapes
070-079, held out), TOSCA_r (classes centaur and wolf held out), SMAL_r (every fourth file held out), deform_sph
(every fifth held out) and common3d (every third held out). Meshes are sampled by area. Held-out groups are whole
subjects or classes where the dataset has them, so no pose of a test body is trained on.

Development split (``--split dev``): the test clouds are not read at all; a fixed part of the training sources
(seed :data:`DEV_SEED`, about 15% of the training clouds, whole groups again: one FAUST_r subject, TOSCA_r classes,
SMAL_r animals, single deform_sph shapes and ShapeNet rows) is held out as the evaluation set and the rest is
trained on. Settings are chosen on this split; ``--split test`` (the default) is the reported protocol.

Loss settings can be swept from the command line: ``--kappa``, ``--n-projections``, ``--projector-lr``,
``--projector-betas`` and ``--ascent-steps`` take one or more values, and each loss runs once for every combination
of the settings it uses (``sw`` ignores ``kappa`` and the projector's settings, so it runs once per ``L``). The
settings of each run are written with its scores.

Run: ``python benchmarks/bench_autoencoder.py [--points 1024] [--epochs 30] [--losses sw amortized-attention-vmf
...] [--split dev] [--kappa 1 10]``; ``--quick`` for a smoke run. Writes
``benchmarks/results/autoencoder_reconstruction.json`` (``--split test``) or appends the run to
``benchmarks/results/autoencoder_dev_study.json`` (``--split dev``, or ``--append``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import re
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import ot
import torch

import geomot
from geomot.losses.amortized import AmortizedSlicedWasserstein
from geomot.models.amortized import AmortizedProjection
from geomot.train import (
    AutoencoderConfig,
    PointSetDataset,
    Trainer,
    collate_point_sets,
    load_autoencoder,
    train_autoencoder,
)
from geomot.train.autoencoder import build_autoencoder

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
DEV_RESULTS = RESULTS / "autoencoder_dev_study.json"
DEV_SEED = 2023  # fixes the development split, whatever --seed (the training seed) is
DEV_FRACTION = 0.15  # share of each training source held out for development (whole groups)
DEFAULT_PROJECTOR = {"projector_lr": 1e-3, "projector_betas": (0.0, 0.9), "ascent_steps": 1}
DEFAULT_LOSSES = [
    "sw", "max-sw", "vmf-dsw", "amortized-linear-vmf", "amortized-generalized-linear-vmf",
    "amortized-nonlinear-vmf", "amortized-attention-vmf", "amortized-efficient-attention-vmf",
    "amortized-linformer-vmf", "chamfer", "emd",
]
PAPER_MODELNET40 = {  # Table 1 of the paper: CD (x100), SW_2 (x100), EMD, seconds per epoch (their GPU)
    "sw": (0.68, 89.61, 191.12, 106), "vmf-dsw": (0.67, 85.03, 187.75, 633),
    "amortized-attention-vmf": (0.67, 83.08, 186.27, 230),
    "amortized-efficient-attention-vmf": (0.68, 82.05, 186.46, 125),
    "amortized-linformer-vmf": (0.68, 81.03, 185.26, 123), "chamfer": (1.25, 681.20, 653.52, 95),
    "emd": (0.40, 94.54, 168.60, 208),
}


def split(tmp: Path) -> tuple[list[Path], list[Path]]:
    """Train and test sources (files), held-out groups as in the module docstring."""
    train: list[Path] = []
    test: list[Path] = []
    rows = np.load(DATA / "shapenet50" / "reconstruct_random_50_shapenetcore55.npy")
    np.save(tmp / "shapenet_train.npy", rows[:40])
    np.save(tmp / "shapenet_test.npy", rows[40:])
    train.append(tmp / "shapenet_train.npy")
    test.append(tmp / "shapenet_test.npy")
    rules = {
        "FAUST_r": lambda name, i: int(re.findall(r"\d+", name)[-1]) // 10 == 7,
        "TOSCA_r": lambda name, i: name.startswith(("centaur", "wolf")),
        "SMAL_r": lambda name, i: i % 4 == 3,
        "deform_sph": lambda name, i: i % 5 == 4,
    }
    for folder, held_out in rules.items():
        for i, f in enumerate(sorted((DATA / folder / "off").glob("*.off"))):
            (test if held_out(f.stem, i) else train).append(f)
    for i, f in enumerate(sorted((DATA / "common3d").glob("*.obj"))):
        (test if i % 3 == 2 else train).append(f)
    return train, test


#: dataset folder -> group of a shape (file stem): the units held out together by the development split
GROUPS = {
    "FAUST_r": lambda stem: f"subject {int(re.findall(r'[0-9]+', stem)[-1]) // 10}",
    "TOSCA_r": lambda stem: re.sub(r"[0-9]+$", "", stem),
    "SMAL_r": lambda stem: re.sub(r"[-_0-9]+$", "", stem),
    "deform_sph": lambda stem: stem,
    "common3d": lambda stem: stem,
}


def held_out_groups(sizes: dict[str, int], fraction: float, rng: np.random.Generator) -> set[str]:
    """Groups (name -> number of clouds) to hold out: in a seeded order, each group that keeps the held-out share
    at most ``4/3 fraction`` is taken, until the share reaches ``fraction``."""
    total = sum(sizes.values())
    held: set[str] = set()
    count = 0
    for name in rng.permutation(sorted(sizes)):
        if count >= fraction * total:
            break
        if count + sizes[name] <= fraction * total * 4 / 3:
            held.add(str(name))
            count += sizes[name]
    return held


def dev_split(train: list[Path], tmp: Path, *, seed: int = DEV_SEED, fraction: float = DEV_FRACTION
              ) -> tuple[list[Path], list[Path]]:
    """Split the training sources of :func:`split` into (fit, dev): whole groups of each source (:data:`GROUPS`;
    single rows of the ShapeNet array) held out with a generator seeded by ``seed``."""
    rng = np.random.default_rng(seed)
    fit: list[Path] = []
    dev: list[Path] = []
    for src in train:
        if src.suffix == ".npy":
            rows = np.load(src)
            held = np.zeros(len(rows), dtype=bool)
            held[rng.permutation(len(rows))[: round(fraction * len(rows))]] = True
            np.save(tmp / f"{src.stem}_fit.npy", rows[~held])
            np.save(tmp / f"{src.stem}_dev.npy", rows[held])
            fit.append(tmp / f"{src.stem}_fit.npy")
            dev.append(tmp / f"{src.stem}_dev.npy")
    for folder, group_of in GROUPS.items():
        files = [f for f in train if f.suffix != ".npy" and DATA / folder in f.parents]
        sizes: dict[str, int] = {}
        for f in files:
            sizes[group_of(f.stem)] = sizes.get(group_of(f.stem), 0) + 1
        held = held_out_groups(sizes, fraction, rng)
        for f in files:
            (dev if group_of(f.stem) in held else fit).append(f)
    return fit, dev


@torch.no_grad()
def evaluate(run: Path, test: list[Path], n_points: int) -> dict[str, float]:
    model, _ = load_autoencoder(run)
    ds = PointSetDataset(test, n_points=n_points, seed=123)
    batch = collate_point_sets([ds[i] for i in range(len(ds))])
    x = batch["points"]
    rec = model(x)
    gen = torch.Generator().manual_seed(0)
    cd = geomot.chamfer_distance(rec, x, reduction="none")
    sw = geomot.sliced_wasserstein(rec, x, n_projections=100, generator=gen, reduction="none")
    emd = []
    for b in range(x.shape[0]):
        c = torch.cdist(rec[b].double(), x[b].double()).square().numpy()
        u = np.full(n_points, 1.0 / n_points)
        emd.append(float(np.sqrt(ot.emd2(u, u, c, numItermax=2_000_000))))
    return {"chamfer": float(cd.mean()), "sw2_x100": 100 * float(sw.mean()), "emd_w2": float(np.mean(emd)),
            "n_test": int(x.shape[0])}


class RepeatedAscent(AmortizedSlicedWasserstein):
    """:class:`geomot.AmortizedSlicedWasserstein` with ``ascent_steps`` ascent steps of the projector per call."""

    def __init__(self, *, ascent_steps: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ascent_steps = ascent_steps

    def ascent_step(self, pair, generator=None):
        value = super().ascent_step(pair, generator)
        for _ in range(self.ascent_steps - 1):
            super().ascent_step(pair, generator)
        return value


def train_with_projector(data: list[Path], out: Path, cfg: AutoencoderConfig, *, epochs: int, batch_size: int,
                         projector_lr: float, projector_betas: tuple[float, float], ascent_steps: int
                         ) -> list[dict[str, float]]:
    """:func:`geomot.train.train_autoencoder` for an ``amortized-KIND-DIST`` loss whose projector has its own Adam
    settings and number of ascent steps (the model, data, generators and loop are those of the library's trainer;
    with the default settings it trains the same run)."""
    body, _, distribution = cfg.loss[len("amortized-"):].rpartition("-")
    dataset = PointSetDataset(list(data), n_points=cfg.n_points, seed=cfg.seed)
    model = build_autoencoder(cfg, "cpu")
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    projector = AmortizedProjection(body.replace("-", "_"), dim=3, n_points=cfg.n_points, generator=gen)
    loss = RepeatedAscent(
        projector=projector, lr=projector_lr, betas=projector_betas, ascent_steps=ascent_steps,
        distribution=distribution, kappa=cfg.kappa, n_projections=cfg.n_projections, root=False,
    )

    def step(net, batch, generator):
        x, lengths = batch["points"], batch["lengths"]
        return loss(net(x, lengths=lengths), x, y_lengths=lengths, generator=generator)

    trainer = Trainer(
        model=model, optimizer=torch.optim.Adam(model.parameters(), lr=cfg.lr), step=step, dataset=dataset,
        collate_fn=collate_point_sets, out=out, kind="autoencoder", config=asdict(cfg), epochs=epochs,
        batch_size=batch_size, seed=cfg.seed, step_state=loss, progress=False, drop_last=True,
    )
    return trainer.fit()


def settings_grid(loss: str, args: argparse.Namespace) -> list[dict]:
    """The combinations of the swept settings that ``loss`` uses."""
    uses_l = loss in ("sw", "cv-sw", "dsw", "ebsw", "vmf-dsw") or (loss.startswith("amortized-") and
                                                                  loss.endswith("-vmf"))
    uses_kappa = loss == "vmf-dsw" or (loss.startswith("amortized-") and loss.endswith("-vmf"))
    amortized = loss.startswith("amortized-")
    axes = {
        "n_projections": args.n_projections if uses_l else [args.n_projections[0]],
        "kappa": args.kappa if uses_kappa else [args.kappa[0]],
        "projector_lr": args.projector_lr if amortized else [DEFAULT_PROJECTOR["projector_lr"]],
        "projector_betas": [tuple(b) for b in args.projector_betas] if amortized
        else [DEFAULT_PROJECTOR["projector_betas"]],
        "ascent_steps": args.ascent_steps if amortized else [DEFAULT_PROJECTOR["ascent_steps"]],
    }
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def run_label(loss: str, s: dict) -> str:
    parts = [loss]
    if s["n_projections"] != 100:
        parts.append(f"L={s['n_projections']}")
    if loss == "vmf-dsw" or (loss.startswith("amortized-") and loss.endswith("-vmf")):
        parts.append(f"kappa={s['kappa']:g}")
    for key, short in (("projector_lr", "plr"), ("projector_betas", "betas"), ("ascent_steps", "steps")):
        if loss.startswith("amortized-") and s[key] != DEFAULT_PROJECTOR[key]:
            parts.append(f"{short}={s[key]}")
    return " ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--losses", nargs="+", default=DEFAULT_LOSSES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="results JSON (default: autoencoder_reconstruction.json for the "
                    "test split, autoencoder_dev_study.json for the dev split)")
    ap.add_argument("--split", choices=["test", "dev"], default="test",
                    help="test: train on the training sources, score the test split; dev: hold out part of the "
                    "training sources and score it (the test split is not read)")
    ap.add_argument("--append", action="store_true", help="append this run to the JSON's 'runs' list (always on "
                    "with --split dev) instead of overwriting the file")
    ap.add_argument("--note", default="", help="free text stored with an appended run")
    ap.add_argument("--kappa", type=float, nargs="+", default=[10.0], help="vMF concentration(s)")
    ap.add_argument("--n-projections", type=int, nargs="+", default=[100], help="L, directions per pair")
    ap.add_argument("--projector-lr", type=float, nargs="+", default=[DEFAULT_PROJECTOR["projector_lr"]],
                    help="Adam learning rate(s) of the amortised projector")
    ap.add_argument("--projector-betas", type=float, nargs=2, action="append", default=None,
                    help="Adam betas of the projector (repeat the option to sweep)")
    ap.add_argument("--ascent-steps", type=int, nargs="+", default=[DEFAULT_PROJECTOR["ascent_steps"]],
                    help="ascent steps of the projector per training step")
    ap.add_argument("--quick", action="store_true", help="256 points, 2 epochs, three losses")
    args = ap.parse_args()
    if args.projector_betas is None:
        args.projector_betas = [list(DEFAULT_PROJECTOR["projector_betas"])]
    if args.quick:
        args.points, args.epochs, args.losses = 256, 2, ["sw", "amortized-attention-vmf", "chamfer"]
    if args.out is None:
        args.out = str(DEV_RESULTS if args.split == "dev" else RESULTS / "autoencoder_reconstruction.json")
    args.append = args.append or args.split == "dev"
    if args.append and Path(args.out).resolve() == (RESULTS / "autoencoder_reconstruction.json").resolve():
        ap.error("--append: autoencoder_reconstruction.json holds the reported run; append to another file")
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        train, test = split(tmp)
        if args.split == "dev":
            train, test = dev_split(train, tmp)
        args.n_train = len(PointSetDataset(train, n_points=args.points))
        args.n_eval = len(PointSetDataset(test, n_points=args.points))
        print(f"{args.n_train} training clouds, {args.n_eval} {args.split} clouds, {args.points} points each")
        for loss in args.losses:
            for settings in settings_grid(loss, args):
                rows.append(run_one(loss, settings, train, test, tmp, args))
                write(args, rows)


def run_one(loss: str, settings: dict, train: list[Path], test: list[Path], tmp: Path,
            args: argparse.Namespace) -> dict:
    """Train one autoencoder and score it on ``test``."""
    label = run_label(loss, settings)
    cfg = AutoencoderConfig(loss=loss, n_points=args.points, seed=args.seed, kappa=settings["kappa"],
                            n_projections=settings["n_projections"])
    run = tmp / re.sub(r"[^A-Za-z0-9.=-]+", "_", label)
    custom = {k: settings[k] for k in DEFAULT_PROJECTOR}
    t0 = time.perf_counter()
    if loss.startswith("amortized-") and custom != DEFAULT_PROJECTOR:
        hist = train_with_projector(train, run, cfg, epochs=args.epochs, batch_size=args.batch_size, **custom)
    else:
        hist = train_autoencoder(train, run, config=cfg, epochs=args.epochs, batch_size=args.batch_size,
                                 progress=False)
    row = {"loss": loss, "label": label, **settings,
           "seconds_per_epoch": float(np.mean([h["seconds"] for h in hist])),
           "train_seconds": time.perf_counter() - t0, "final_train_loss": hist[-1]["loss"],
           **evaluate(run, test, args.points)}
    print(f"{label:48s} CD {row['chamfer']:.5f}  SW2x100 {row['sw2_x100']:.3f}  EMD {row['emd_w2']:.4f}  "
          f"{row['seconds_per_epoch']:.2f} s/epoch", flush=True)
    return row


def write(args: argparse.Namespace, rows: list[dict]) -> None:
    """Write the results so far (after every loss, so that a long run that is stopped keeps what it measured)."""
    base = next((r for r in rows if r["loss"] == "sw"), None)
    if base is not None:
        for r in rows:
            r["sw2_vs_sw"] = r["sw2_x100"] / base["sw2_x100"]
            r["time_vs_sw"] = r["seconds_per_epoch"] / base["seconds_per_epoch"]
    out = {
        "machine": platform.processor() or platform.machine(), "node": platform.node(),
        "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "points": args.points, "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
        "rows": rows, "paper_modelnet40": PAPER_MODELNET40,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.append:
        out = {k: v for k, v in out.items() if k != "paper_modelnet40"}
        out.update(split=args.split, dev_seed=DEV_SEED if args.split == "dev" else None, n_train=args.n_train,
                   n_eval=args.n_eval, note=args.note, time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        doc = json.loads(path.read_text()) if path.is_file() else {"runs": []}
        if not hasattr(args, "run_index"):
            args.run_index = len(doc["runs"])
            doc["runs"].append(out)
        else:
            doc["runs"][args.run_index] = out
        path.write_text(json.dumps(doc, indent=1))
    else:
        path.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
