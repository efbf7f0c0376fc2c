"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks: [scripts/mkdocs_hooks.py]``).

At build time they write four pages that are never stored in ``docs/``:

- ``cli.md``: the reference of the ``geomot`` command, from the argparse parsers of :mod:`geomot.cli`;
- ``benchmarks.md``: tables (and two plots when matplotlib is installed) made from ``benchmarks/results/*.json``,
  each naming its machine and date;
- ``changelog.md``: ``CHANGELOG.md``;

and they drop from the navigation the optional pages (``OPTIONAL_PAGES``) that are not in ``docs/``.

The page generators are plain functions (``cli_markdown``, ``benchmarks_markdown``) so that tests and
``python scripts/mkdocs_hooks.py OUT_DIR`` can call them without MkDocs.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OPTIONAL_PAGES = ("diffusionnet.md", "deep-fmaps.md", "learned-matching.md")
CPU_MACHINE = "2-core x86_64 CPU (Linux)"
FILE_NOTES = (  # (file name prefix, what the file holds), first match wins
    ("autoencoder", "`benchmarks/bench_autoencoder.py`: reconstruction errors of the autoencoder per loss"),
    ("bench_cuda", "`benchmarks/bench_cuda.py`: every loss on the GPU against plain torch versions"),
    ("bench_sinkhorn_training", "`benchmarks/bench_sinkhorn_training.py`: a divergence training step"),
    ("bench_sliced", "`benchmarks/bench_sliced.py`: sliced Wasserstein against POT and plain torch"),
    ("deform_default_cortex", "`benchmarks/bench_deform_default.py --cortex`: fsaverage5 white -> pial"),
    ("deform_default_dev", "`benchmarks/bench_deform_default.py --split dev`: the development pairs of the default"),
    ("deform_default_validation", "`benchmarks/bench_deform_default.py --split validation`: 10 deform_sph pairs"),
    ("learned_matching", "`benchmarks/bench_learned_matching.py`: the learned matcher on held-out shapes"),
    ("match_clouds", "`benchmarks/bench_match_clouds.py`: `geomot.match` on the vertex clouds of validation pairs"),
    ("match_speed", "`benchmarks/bench_match_speed.py`: `geomot.match` per stage against an earlier checkout"),
    ("match_split", "`benchmarks/bench_match_split.py`: `geomot.match` per pair on the development / validation split"),
    ("dijkstra", "`benchmarks/bench_dijkstra.py`: graph distances against scipy's Dijkstra"),
    ("matching_edge_stretch_gate", "`geomot.match` at its defaults, per pair (FAUST_r, TOSCA_r, SMAL_r)"),
    ("matching_faust_r_pyfm", "`benchmarks/bench_matching.py --peer-only`: pyFM on FAUST_r"),
    ("matching_smal_tosca_pyfm", "`benchmarks/bench_matching.py --peer-only`: pyFM on SMAL_r and TOSCA_r"),
    ("matching_faust_r_dirichlet", "an early run of the matching benchmark (partial; its peer columns are invalid)"),
    ("matching_tosca_smal_dirichlet", "an early run of the matching benchmark (partial; its peer columns are invalid)"),
    ("matching_faust_r", "`benchmarks/bench_matching.py`: FAUST_r, 200 pairs, before the windowed polish"),
    ("matching_smal_tosca", "`benchmarks/bench_matching.py`: SMAL_r and TOSCA_r, before the windowed polish"),
    ("sinkhorn_online_sparse", "`benchmarks/bench_sinkhorn_online.py`: online (block-sparse sweep) against dense"),
    ("sinkhorn_online", "`benchmarks/bench_sinkhorn_online.py`: the online backend against dense and GeomLoss"),
    ("sinkhorn_large", "`benchmarks/bench_sinkhorn.py --only large`: a 50,000-point divergence"),
    ("sinkhorn_equal_accuracy", "`benchmarks/bench_sinkhorn.py --only speed`: POT and GeomLoss at equal accuracy"),
    ("sinkhorn", "`benchmarks/bench_sinkhorn.py`: speed against POT and GeomLoss (earlier runs, see the notes)"),
    ("study_extrinsic", "`benchmarks/study_extrinsic_candidates.py`: the extrinsic candidates of `match`"),
)

# ------------------------------------------------------------------------------------------------------------------
# CLI reference


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            names = ", ".join(f"`{s}`" for s in action.option_strings)
            if action.nargs != 0:
                metavar = action.metavar or action.dest.upper()
                names += f" `{metavar if isinstance(metavar, str) else ' '.join(metavar)}`"
        else:
            names = f"`{action.metavar or action.dest}`"
        default = action.default
        hidden = default is None or default is argparse.SUPPRESS or default is False or action.nargs == 0
        shown = "" if hidden else f"`{default}`"
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            choices = ", ".join(f"`{c}`" for c in action.choices)
            help_text = f"{action.help or ''} (one of {choices})".strip()
        else:
            help_text = action.help or ""
        help_text = help_text.replace("%(default)s", str(default)).replace("%(prog)s", parser.prog)
        rows.append(f"| {names} | {shown} | {help_text.replace('|', '/')} |")
    return rows


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


def _command_section(parser: argparse.ArgumentParser, level: int) -> list[str]:
    out = [f"{'#' * level} {parser.prog}", ""]
    if parser.description:
        out += [parser.description.strip(), ""]
    out += ["```", _usage(parser), "```", ""]
    rows = _option_rows(parser)
    if rows:
        out += ["| argument | default | meaning |", "|---|---|---|", *rows, ""]
    if parser.epilog:
        out += ["```", parser.epilog.strip(), "```", ""]
    for _, sub in _subcommands(parser):
        out += _command_section(sub, min(level + 1, 4))
    return out


def cli_markdown() -> str:
    """The CLI reference page, generated from :func:`geomot.cli.build_parser`."""
    from geomot.cli import build_parser

    parser = build_parser()
    subs = _subcommands(parser)
    out = [
        "# Command line reference",
        "",
        "Generated from the argument parsers of `geomot.cli` when the site is built; `geomot COMMAND --help` prints",
        "the same. Errors print one line starting with `geomot COMMAND: error:` and exit with status 2.",
        "",
        "| command | what |",
        "|---|---|",
    ]
    helps = {
        a.dest: a.help
        for act in parser._actions
        if isinstance(act, argparse._SubParsersAction)
        for a in act._choices_actions
    }
    for name, _ in subs:
        out.append(f"| [`geomot {name}`](#geomot-{name}) | {(helps.get(name) or '').replace('|', '/')} |")
    out += [
        "",
        "## geomot",
        "",
        "```",
        _usage(parser),
        "```",
        "",
        "| argument | default | meaning |",
        "|---|---|---|",
        *_option_rows(parser),
        "",
    ]
    for _, sub in subs:
        out += _command_section(sub, 2)
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------------------------
# Benchmarks page


def _load(name: str) -> Any | None:
    path = RESULTS / name
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _git_date(name: str) -> str:
    """Date of the last commit that changed the result file, or an empty string outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%cs", "--", str(RESULTS / name)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _date(name: str, data: Any) -> str:
    if isinstance(data, dict):
        for key in ("date", "started"):
            if isinstance(data.get(key), str):
                return data[key][:10]
        for value in data.values():
            if isinstance(value, dict) and isinstance(value.get("date"), str):
                return value["date"][:10]
    return _git_date(name) or "not recorded"


def _t(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _caption(name: str, data: Any, machine: str) -> str:
    return f"*`benchmarks/results/{name}` · {machine} · {_date(name, data)}*"


def _sliced(out: list[str]) -> None:
    runs = [
        ("bench_sliced.json", "CPU, 2 torch threads"),
        ("bench_sliced_threads1.json", "CPU, 1 thread"),
        ("bench_sliced_h200.json", "one NVIDIA H200 (its CPU rows: 16 threads of that machine)"),
    ]
    out += [
        "## Sliced Wasserstein",
        "",
        "`python benchmarks/bench_sliced.py`: float32, d = 3, L = 100 directions, forward + backward with "
        "respect to `x`, the same directions for every contender, best of 3 (5 on the GPU).",
        "",
    ]
    for name, what in runs:
        data = _load(name)
        if not data:
            continue
        machine = CPU_MACHINE if "h200" not in name else "NVIDIA H200"
        out += [f"### {what}", "", _caption(name, data, machine + f", torch {data['versions']['torch']}"), ""]
        cases = [
            ("single", "one pair, N = M = 100,000"),
            ("batched", "64 pairs of 2,048 points"),
            ("weighted", "N = 20,000 vs M = 25,000, random weights"),
        ]
        contenders = sorted(
            {k for c, _ in cases for k in data.get(c, {}).get("times_s", {})}, key=lambda k: (k != "geomot", k)
        )
        out += ["| case | " + " | ".join(contenders) + " |", "|---|" + "---|" * len(contenders)]
        for key, label in cases:
            times = data.get(key, {}).get("times_s", {})
            out.append(f"| {label} | " + " | ".join(_t(times.get(c)) for c in contenders) + " |")
        cuda = data.get("cuda")
        if cuda:
            for key, label in (("single", "GPU: one pair, N = M = 100,000"), ("batched", "GPU: 64 pairs of 2,048")):
                times = cuda.get(key, {}).get("times_s", {})
                row = {
                    "geomot": times.get("geomot"),
                    "POT": times.get("POT", times.get("POT loop")),
                    "torch": times.get("torch"),
                }
                out.append(f"| {label} | " + " | ".join(_t(row.get(c)) for c in contenders) + " |")
        out += ["", "Ratios: " + "; ".join(f"{k} **{v:.1f}x**" for k, v in data.get("ratios", {}).items()) + ".", ""]


def _cuda(out: list[str]) -> None:
    name = "bench_cuda_h200.json"
    data = _load(name)
    if not data:
        return
    dev = data.get("device", {})
    machine = f"{dev.get('name', 'GPU')}, CUDA {dev.get('cuda', '?')}, torch {data['versions']['torch']}"
    out += [
        "## GPU: every loss against a plain torch version",
        "",
        "`python benchmarks/bench_cuda.py`: forward + backward, best of 3; peak memory from "
        "`torch.cuda.max_memory_allocated`.",
        "",
        _caption(name, data, machine),
        "",
        "| case | contender | time | peak memory |",
        "|---|---|---|---|",
    ]
    for case, sizes in data["cases"].items():
        blocks = sizes.items() if "results" not in sizes else [("", sizes)]
        for size, block in blocks:
            if not isinstance(block, dict) or "results" not in block:
                continue
            for who, r in block["results"].items():
                time = "out of memory" if "error" in r else _t(r.get("time_s"))
                peak = f"{r['peak_gib']:.2f} GiB" if "peak_gib" in r else ""
                out.append(f"| {case} {size} | {who} | {time} | {peak} |")
    out += ["", *(f"- {n}" for n in data.get("notes", [])), ""]


def _sinkhorn(out: list[str]) -> None:
    out += [
        "## Sinkhorn",
        "",
        "`python benchmarks/bench_sinkhorn.py`: `x` uniform in `[0, 1]^3`, `y ~ N(0.5, 0.15^2 I)`, float32, "
        "eps = 0.05^2; marginal errors recomputed in float64 for every solver. geomot fast: "
        "`relaxation=1.7`; GeomLoss default: 8 annealed updates, not converged; GeomLoss equal accuracy: its "
        "lowest error within the time budget (it never reaches 1e-5 in float32).",
        "",
    ]
    runs = [
        ("sinkhorn_equal_accuracy_quiet.json", "2 threads, machine otherwise idle"),
        ("sinkhorn_equal_accuracy.json", "2 threads, load 1.2-3.1 from other jobs"),
        ("sinkhorn_equal_accuracy_threads1.json", "1 thread, load 2.1-2.6"),
    ]
    for name, what in runs:
        data = _load(name)
        if not data:
            continue
        out += [
            f"### {what}",
            "",
            _caption(name, data, CPU_MACHINE),
            "",
            "| N | geomot default | geomot fast | GeomLoss default | GeomLoss, lowest error | geomot at that "
            "error | POT |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in data.get("speed", []):
            d, f, gl, pot = (
                row.get("geomot_default", {}),
                row.get("geomot_fast", {}),
                row.get("geomloss", {}),
                row.get("pot") or {},
            )
            eq = row.get("geomloss_equal_accuracy") or {}
            matched = eq.get("matched") or {}
            gl_eq = f"{eq['err']:.1e} in {_t(eq['time'])}" if "err" in eq else ""
            m = f"{_t(matched.get('geomot_time'))} ({matched['speedup']:,.0f}x)" if matched.get("speedup") else ""
            p = f"{_t(pot.get('time'))}, error {pot['err']:.1e}" if pot.get("time") else "not run"
            out.append(
                f"| {row['n']:,} | {_t(d.get('time'))}, {d.get('iters')} it, error {d.get('err', 0):.1e} | "
                f"{_t(f.get('time'))}, {f.get('iters')} it | {_t(gl.get('time'))}, error "
                f"{gl.get('err', 0):.2f} | {gl_eq} | {m} | {p} |"
            )
        out.append("")
    data = _load("sinkhorn.json")
    if data and "sns" in data:
        s = data["sns"]
        out += [
            "### Sinkhorn-Newton-Sparse",
            "",
            _caption("sinkhorn.json", data, CPU_MACHINE + ", 2 threads"),
            "",
            f"float64, N = {s['n']:,}, to marginal error 1e-9: plain Sinkhorn {s['sinkhorn_iters']} iterations "
            f"in {_t(s['sinkhorn_time'])}, over-relaxed {s['relaxed_iters']} in {_t(s['relaxed_time'])}, SNS "
            f"{s['sns_iters']} in {_t(s['sns_time'])} (costs agree to {s['cost_rel_diff']:.1e}). Values against "
            f"POT: relative difference {data['values']['rel_diff']:.1e}.",
            "",
        ]
    data = _load("sinkhorn_large.json")
    if data:
        out += [
            "### A large divergence",
            "",
            _caption("sinkhorn_large.json", data, CPU_MACHINE + ", 2 threads"),
            "",
            f"Sinkhorn divergence between two clouds of {data['n']:,} points, online backend, eps = "
            f"{data['eps']:.3g}, each term to marginal error {data['tol']:g}: converged {data['converged']}, "
            f"iterations {data['iters']}, {data['time']:.0f} s, peak RSS {data['peak_rss_gib']:.2f} GiB.",
            "",
        ]
    data = _load("sinkhorn_divergence_large.json")
    if data:
        out += [
            "### Large divergences, clustered solver",
            "",
            _caption("sinkhorn_divergence_large.json", data, CPU_MACHINE + f", {data.get('torch_threads')} threads"),
            "",
            "`python benchmarks/bench_sinkhorn_divergence_large.py --n 50000 --compare-n 10000 --geomloss-n 10000`: "
            "float32, `sinkhorn_divergence(x, y, eps=eps)` with its defaults; errors against a float64 run to "
            "marginal error 1e-7; GeomLoss (KeOps on CPU) at `blur = sqrt(eps / 2)`, its value doubled.",
            "",
            "| N | eps | forward | forward + backward | peak RSS |",
            "|---|---|---|---|---|",
        ]
        for r in data.get("large", []):
            out.append(f"| {r['n']:,} | {r['eps']:.4g} | {_t(r['time_s'])} | {_t(r['forward_backward_time_s'])} | "
                       f"{r['peak_rss_gib']:.2f} GiB |")
        out += ["", "| N | eps | solver | time | relative error |", "|---|---|---|---|---|"]
        for g in data.get("geomloss", []):
            for r in g["runs"]:
                who = r["solver"] + (f", scaling {r['scaling']}" if "scaling" in r else "")
                out.append(f"| {g['n']:,} | {g['eps']:.4g} | {who} | {_t(r['time_s'])} | {r['rel_error']:.1e} |")
        for c in data.get("compare", []):
            out.append("")
            out.append(f"N = {c['n']:,}, eps = {c['eps']:.4g}: clustered {_t(c['clustered']['time_s'])}, the "
                       f"streamed path {c['streamed_over_clustered']:.1f}x and the stored kernels "
                       f"{c['stored_over_clustered']:.1f}x that time (values within "
                       f"{max(c['value_rel_diff_streamed'], c['value_rel_diff_stored']):.0e}).")
        out.append("")
    data = _load("bench_sinkhorn_training.json")
    if data:
        u = data.get("uniform", {})
        out += [
            "### A training step of the divergence",
            "",
            _caption("bench_sinkhorn_training.json", data, CPU_MACHINE + f", {u.get('threads')} threads"),
            "",
            "16 x 512 float32 uniform clouds, blur 0.05, forward + backward; error against a converged float64 "
            "run; geomot with its marginals converged to 1e-6 (`tol=1e-6`).",
            "",
            "| method | median time | time / GeomLoss default | max relative error |",
            "|---|---|---|---|",
        ]
        for r in u.get("rows", []):
            out.append(
                f"| {r['method']} | {_t(r['median_s'])} | {r['time_vs_geomloss_default']:.2f} | "
                f"{r['max_rel_error']:.1e} |"
            )
        out.append("")


def _autoencoder(out: list[str]) -> None:
    data = _load("autoencoder_reconstruction.json")
    if not data or not data.get("rows"):
        return
    paper = data.get("paper_modelnet40", {})
    out += [
        "### Point-cloud autoencoders, one budget for all losses",
        "",
        _caption("autoencoder_reconstruction.json", data, CPU_MACHINE + f", {data.get('threads')} threads"),
        "",
        f"PointNet autoencoders trained {data['epochs']} epochs on {data['points']} points per cloud (batch "
        f"{data['batch_size']}), scored on held-out shapes: Chamfer, SW_2 x 100 (L = 100) and exact W_2 (EMD) between "
        "a test cloud and its reconstruction; seconds per training epoch and the ratios to the SW autoencoder. The "
        "last column is the paper's ModelNet40 row (CD x 100 / SW_2 x 100 / EMD / s per epoch on their GPU).",
        "",
        "| loss | Chamfer | SW_2 x 100 | EMD | s / epoch | SW_2 / SW's | time / SW's | paper |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if data.get("note"):
        out[-3:-3] = ["", str(data["note"])]
    for r in data["rows"]:
        ref = paper.get(r["loss"])
        out.append(
            f"| {r['loss']} | {r['chamfer']:.4f} | {r['sw2_x100']:.2f} | {r['emd_w2']:.4f} | "
            f"{r['seconds_per_epoch']:.1f} | {r.get('sw2_vs_sw', float('nan')):.3f} | "
            f"{'later run' if 'note' in r else format(r.get('time_vs_sw', float('nan')), '.2f')} | "
            f"{' / '.join(map(str, ref)) if ref else ''} |"
        )
    out.append("")
    times = _load("autoencoder_epoch_time.json")
    if times and times.get("rows"):
        out += [
            _caption("autoencoder_epoch_time.json", times, CPU_MACHINE + ", idle"),
            "",
            f"Seconds per epoch, {times['epochs']} epochs of each loss in one process on an otherwise idle machine:",
            "",
            "| loss | s / epoch | time / SW's |",
            "|---|---|---|",
        ]
        out += [f"| {r['loss']} | {r['seconds_per_epoch']:.1f} | {r.get('time_vs_sw', float('nan')):.2f} |"
                for r in times["rows"]]
        out.append("")


def _learned_matching(out: list[str]) -> None:
    rows = [(p.name, _load(p.name)) for p in sorted(RESULTS.glob("learned_matching_*.json"))]
    rows = [(n, d) for n, d in rows if d]
    if not rows:
        return
    out += ["### Learned matching on held-out shapes", ""]
    for name, d in rows:
        cfg = d.get("config", {})
        setup = f"input {cfg.get('input', 'wks')}"
        if cfg.get("augment", "none") != "none":
            setup += f", {cfg['augment']} augmentation"
        if cfg.get("lr_schedule", "constant") != "constant":
            setup += f", {cfg['lr_schedule']} learning rate"
        if d.get("headings", 1) > 1:
            setup += f", {d['headings']} source headings tried"
        if d.get("eval_data"):
            setup += f", evaluated on `{Path(d['eval_data']).name}`"
        out += [
            _caption(name, d, CPU_MACHINE + f", {d.get('torch_threads')} threads"),
            "",
            f"{d['dataset']} ({setup}): trained {d['train_seconds'] / 60:.0f} min ({d['epochs_done']} epochs) on "
            f"{d['train_shapes']} shapes without correspondences, evaluated on {d['n_pairs']} ordered pairs of "
            f"{d['test_shapes']} held-out shapes (test-time adaptation: {d['adapt_steps']} steps): mean geodesic error "
            f"{d['mean']:.2f}, median {d['median']:.2f}, max {d['max']:.2f} (x100), "
            f"{100 * d['share_above_10']:.0f}% of pairs above 10, median {d['median_seconds']:.1f} s a pair."
            + (f" The training-free `geomot.match` on the same pairs: mean {d['training_free']['mean']:.2f}, "
               f"median {d['training_free']['median']:.2f}, max {d['training_free']['max']:.2f}."
               if "training_free" in d else ""),
            "",
        ]


def _matching(out: list[str]) -> list[tuple[str, list[float]]]:
    curves: list[tuple[str, list[float]]] = []
    data = _load("matching_edge_stretch_gate.json")
    out += [
        "## Shape matching",
        "",
        "`geomot.match` at its defaults; mean geodesic error x100 (lower is better), one torch thread per "
        "process, two processes on the two cores (the seconds are upper bounds).",
        "",
    ]
    if data:
        out += [
            _caption("matching_edge_stretch_gate.json", data, CPU_MACHINE),
            "",
            "| dataset | pairs | mean | median | seconds a pair |",
            "|---|---|---|---|---|",
        ]
        for key, label in (
            ("FAUST_r", "FAUST_r, seed-0 sample of tr_reg_000-079"),
            ("TOSCA_r", "TOSCA_r, within class"),
            ("SMAL_r", "SMAL_r, seed-0 sample"),
        ):
            b = data.get(key)
            if b:
                out.append(
                    f"| {label} | {b['n']} | {b['mean_gate']:.2f} | {b['median_gate']:.2f} | "
                    f"{b['seconds_per_pair']:.1f} |"
                )
                curves.append((label.split(",")[0], [p["gate"] for p in b["pairs"]]))
        a = data.get("SMAL_r_all_496")
        if a:
            out.append(f"| SMAL_r, every unordered pair | {a['n']} | {a['after']:.2f} | {a['med_a']:.2f} | |")
            curves.append(("SMAL_r, all pairs", [p["gate"] if "gate" in p else p.get("after", 0) for p in a["pairs"]]))
        timing = data.get("FAUST_r_timing_40")
        if timing:
            out += [
                "",
                f"Timing alone (every 5th FAUST_r pair, two processes on the two cores): "
                f"{timing['seconds_per_pair']:.2f} s a pair.",
            ]
        out.append("")
    peers = [
        ("matching_faust_r_pyfm.json", "FAUST_r"),
        ("matching_smal_tosca_pyfm.json", "TOSCA_r"),
        ("matching_smal_tosca_pyfm.json", "SMAL_r"),
    ]
    rows = []
    for name, ds in peers:
        d = _load(name)
        if d and d.get("summary", {}).get(ds, {}).get("pyfm"):
            s = d["summary"][ds]["pyfm"]
            rows.append(
                f"| {ds} | {s['n_pairs']} | {s['mean']:.2f} | {s['median']:.2f} | "
                f"{100 * s['share_above_10']:.0f} % | {_date(name, d)} |"
            )
    if rows:
        out += [
            "### The peer: pyFM 1.3 (settings of its README) on the same pairs",
            "",
            "| dataset | pairs | mean | median | above 10 | date |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    data = _load("study_extrinsic_smal_r.json")
    if data:
        s = data["summary"]
        out += [
            "### The extrinsic candidates on every SMAL_r pair",
            "",
            _caption("study_extrinsic_smal_r.json", data, CPU_MACHINE + ", 1 thread"),
            "",
            f"`benchmarks/study_extrinsic_candidates.py` over {s['pairs']} pairs: a right alignment first by "
            f"Chamfer distance on {s['right_in_first_1_by_chamfer']}, among the two kept on "
            f"{s['right_in_first_2_by_chamfer']}, among the first three on {s['right_in_first_3_by_chamfer']}.",
            "",
            "| key choosing between the two kept | pairs where it picks the worse | mean proxy error |",
            "|---|---|---|",
        ]
        for key, value in s.items():
            if key.startswith("kept_") and isinstance(value, dict):
                out.append(f"| {key[5:]} | {value.get('worse_by_0.2', '')} | {value.get('mean_err', 0):.4f} |")
        out.append("")
    data = _load("match_clouds_validation.json")
    if data:
        out += [
            "### Point clouds",
            "",
            _caption("match_clouds_validation.json", data, CPU_MACHINE + ", 1 thread"),
            "",
            "`geomot.match` on the vertices of validation pairs given as `PointCloud`s (error on the target mesh), "
            "before and after clouds had orientation terms.",
            "",
            "| dataset | pairs | before: mean / median / above 10 | after: mean / median / above 10 |",
            "|---|---|---|---|",
        ]
        before, after = data["versions"]["before"]["summary"], data["versions"]["after"]["summary"]
        for name, b in before.items():
            a = after[name]
            out.append(
                f"| {name} | {a['n']} | {b['mean']:.2f} / {b['median']:.2f} / {b['n_above_10']} | "
                f"{a['mean']:.2f} / {a['median']:.2f} / {a['n_above_10']} |"
            )
        out.append("")
    return curves


def _deformation(out: list[str]) -> None:
    data = _load("deform_default_validation.json")
    if not data:
        return
    out += [
        "## Deformation",
        "",
        "`python benchmarks/bench_deform_default.py --split validation`: 10 ordered "
        "deform_sph pairs with known vertex correspondence; vertex error and ASSD in deform_sph units "
        "(radius 1.7).",
        "",
        _caption("deform_default_validation.json", data, CPU_MACHINE + ", 1 thread"),
        "",
        "| configuration | mean vertex error | pairs with flipped faces | max self-intersecting faces | ASSD |",
        "|---|---|---|---|---|",
    ]
    for config, s in data.get("summary", {}).items():
        out.append(
            f"| {config} | {s['vertex_error']:.4f} | {s['pairs_with_flipped_faces']} | "
            f"{s['max_self_intersections']} | {s['assd']:.4f} |"
        )
    cortex = _load("deform_default_cortex.json")
    if cortex:
        out += [
            "",
            f"{cortex.get('pair', 'white -> pial')}:",
            "",
            _caption("deform_default_cortex.json", cortex, CPU_MACHINE + ", 1 thread"),
            "",
            "| configuration | ASSD (mm) | HD90 (mm) | self-intersecting faces (max over frames) | fit |",
            "|---|---|---|---|---|",
        ]
        for r in cortex.get("runs", []):
            out.append(
                f"| {r['config']} | {r['assd_mm']:.3f} | {r['hd90_mm']:.3f} | "
                f"{max(r.get('self_intersections_per_frame') or [0])} | {r['fit_seconds']:.0f} s |"
            )
    out.append("")


def _plots(curves: list[tuple[str, list[float]]]) -> dict[str, bytes]:
    """PNG bytes of the plots, or nothing without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    pngs = {}
    if curves:
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
        for label, errors in curves:
            errors = sorted(errors)
            ax.plot(errors, [(i + 1) / len(errors) for i in range(len(errors))], label=f"{label} ({len(errors)})")
        ax.set_xscale("log")
        ax.set_xlabel("geodesic error x100 of a pair (log scale)")
        ax.set_ylabel("share of pairs at or below")
        ax.set_title("geomot.match: per-pair errors")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        pngs["benchmarks_matching.png"] = buf.getvalue()
    bars = []
    for name, label in (("bench_sliced.json", "CPU, 2 threads"), ("bench_sliced_h200.json", "H200")):
        data = _load(name)
        if data:
            times = (data.get("cuda") or data)["single"]["times_s"]
            bars.append((label, {k: v for k, v in times.items() if k in ("geomot", "POT", "torch")}))
    if bars:
        fig, axes = plt.subplots(1, len(bars), figsize=(3.2 * len(bars), 3.0), dpi=100)
        for ax, (label, times) in zip(list(axes) if len(bars) > 1 else [axes], bars):
            ax.bar(list(times), list(times.values()), color=["#2a7ab9", "#999999", "#cc8844"][: len(times)])
            ax.set_yscale("log")
            ax.set_title(f"SW, 100,000 points: {label}", fontsize=9)
            ax.set_ylabel("seconds (log)")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        pngs["benchmarks_sliced.png"] = buf.getvalue()
    return pngs


def benchmarks_markdown() -> tuple[str, dict[str, bytes]]:
    """The Benchmarks page and its PNG plots (file name -> bytes), from ``benchmarks/results/*.json``."""
    out = [
        "# Benchmarks",
        "",
        "Generated from `benchmarks/results/*.json` when the site is built. Each benchmark script in `benchmarks/` "
        "times geomot against its peers in one process on the same inputs and writes one of these files; each "
        "table names the file, the machine and the date. CPU figures come from a 2-core machine that other jobs "
        "shared, so compare ratios rather than absolute times; GPU figures are absolute.",
        "",
        "The development notes keep the runs behind the choices of the defaults: "
        "[shape matching](notes/matching-development.md), [its robustness](notes/matching-robustness.md), "
        "[sliced Wasserstein](notes/sliced-speed.md), "
        "[Sinkhorn](notes/sinkhorn-measurements.md), [deformation](notes/deformation-measurements.md), "
        "[its default objective](notes/deformation-default.md), [the learned matcher](notes/learned-matching.md) "
        "and [the amortised projections' concentration](notes/amortized-dev-study.md).",
        "",
    ]
    _sliced(out)
    out += ["![time of one SW forward + backward](benchmarks_sliced.png)", ""]
    _cuda(out)
    _sinkhorn(out)
    _autoencoder(out)
    curves = _matching(out)
    out += ["![per-pair matching errors](benchmarks_matching.png)", ""]
    _learned_matching(out)
    _deformation(out)
    listed = sorted(p.name for p in RESULTS.glob("*.json"))
    out += ["## Every result file", "", "| file | what | date | size |", "|---|---|---|---|"]
    for name in listed:
        what = next((text for prefix, text in FILE_NOTES if name.startswith(prefix)), "")
        out.append(
            f"| `{name}` | {what} | {_date(name, _load(name))} | {(RESULTS / name).stat().st_size / 1024:.0f} KiB |"
        )
    out.append("")
    pngs = _plots(curves)
    text = "\n".join(out)
    for png in ("benchmarks_sliced.png", "benchmarks_matching.png"):
        if png not in pngs:
            text = "\n".join(line for line in text.split("\n") if f"]({png})" not in line)
    return text, pngs


# ------------------------------------------------------------------------------------------------------------------
# MkDocs events


def _nav_files(item: Any) -> set[str]:
    if isinstance(item, dict):
        return set().union(*(_nav_files(v) for v in item.values()))
    if isinstance(item, list):
        return set().union(*(_nav_files(i) for i in item)) if item else set()
    return {item} if isinstance(item, str) else set()


def on_config(config: Any) -> Any:
    """Drop the optional pages that are not in ``docs/`` from the navigation, and list the pages of ``docs/`` that
    the navigation does not name under a last section, "More" (so that a new page is never left out)."""
    docs = Path(config["docs_dir"])

    def keep(item: Any) -> Any:
        if isinstance(item, dict):
            ((title, value),) = item.items()
            kept = keep(value)
            return None if kept is None else {title: kept}
        if isinstance(item, list):
            return [k for k in (keep(i) for i in item) if k is not None]
        if isinstance(item, str) and item in OPTIONAL_PAGES and not (docs / item).exists():
            return None
        return item

    if config.get("nav"):
        nav = keep(config["nav"])
        named = _nav_files(nav)
        extra = sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.md"))
        extra = [page for page in extra if page not in named]
        if extra:
            nav.append({"More": extra})
        config["nav"] = nav
    return config


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages and pictures."""
    from mkdocs.structure.files import File

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    text, pngs = benchmarks_markdown()
    files.append(File.generated(config, "cli.md", content=cli_markdown()))
    files.append(File.generated(config, "benchmarks.md", content=text))
    for name, data in pngs.items():
        files.append(File.generated(config, name, content=data))
    changelog = (ROOT / "CHANGELOG.md").read_text()
    files.append(File.generated(config, "changelog.md", content=changelog))
    return files


if __name__ == "__main__":  # python scripts/mkdocs_hooks.py OUT_DIR: write the generated pages there
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "out/docs-generated")
    target.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    (target / "cli.md").write_text(cli_markdown())
    page, plots = benchmarks_markdown()
    (target / "benchmarks.md").write_text(page)
    for file_name, png in plots.items():
        (target / file_name).write_bytes(png)
    print(f"wrote {target}")
