"""``lgfn proxy fit`` (and ``python -m lgfn_graph.proxy``): fit a proxy of either kind on a CSV,
print its held-out or cross-validated score, and save it for ``task.reward_model``."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from .datasets import DatasetError, read_molecule_csv
from .graph_reward import TRANSFORMS
from .proxy_base import ProxyError

KINDS = ("gnn", "fingerprint")
# options of one kind only, with their defaults: given for the other kind, they are an error
_GNN_OPTIONS = {"holdout": 0.2, "epochs": 100, "hidden": 64, "num_layers": 3, "batch_size": 64, "lr": 1e-3,
                "device": "cpu"}
_FINGERPRINT_OPTIONS = {"cv": 5, "n_estimators": 200}


def add_fit_arguments(p: argparse.ArgumentParser, default_kind: str | None = None) -> None:
    """The arguments of a proxy fit; ``--kind`` is required unless ``default_kind`` is given."""
    p.add_argument("csv", help="delimited text file with a header line: a SMILES column and a value column")
    p.add_argument("--kind", choices=KINDS, default=default_kind, required=default_kind is None,
                   help="gnn: a GINE network on atom graphs (held-out score); fingerprint: a scikit-learn "
                        "random forest on Morgan fingerprints (cross-validated score)"
                        + (f" (default {default_kind})" if default_kind else ""))
    p.add_argument("--smiles-col", default="smiles", metavar="COLUMN", help="the SMILES column (default smiles)")
    p.add_argument("--value-col", default="value", metavar="COLUMN", help="the value column (default value)")
    p.add_argument("--out", metavar="FILE", help="save the fitted proxy here (a .pt file for gnn, .pkl.gz for fingerprint)")
    p.add_argument("--seed", type=int, default=0, help="split, initial weights and batch order (default 0)")
    p.add_argument("--transform", choices=sorted(TRANSFORMS),
                   help="make the proxy's output a non-negative reward (needed if values can be negative)")
    from .cli import _device  # the same check as every lgfn --device (imported late: cli imports this)
    g = p.add_argument_group("--kind gnn")
    g.add_argument("--holdout", type=_fraction, help="fraction held out for the score, in [0, 1) (default 0.2)")
    g.add_argument("--epochs", type=_at_least(0), help="training epochs (default 100)")
    g.add_argument("--hidden", type=_at_least(1), help="node width (default 64)")
    g.add_argument("--num-layers", type=_at_least(1), help="GINE layers (default 3)")
    g.add_argument("--batch-size", type=_at_least(1), help="molecules per training batch (default 64)")
    g.add_argument("--lr", type=_positive_float, help="Adam learning rate (default 1e-3)")
    g.add_argument("--device", type=_device, help="where it trains: cpu, cuda or cuda:K (default cpu)")
    f = p.add_argument_group("--kind fingerprint")
    f.add_argument("--cv", type=_at_least(2), help="cross-validation folds (default 5)")
    f.add_argument("--n-estimators", type=_at_least(1), help="trees in the forest (default 200)")


def _at_least(low: int):
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = low - 1
        if n < low:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {low}, got {text!r}")
        return n
    return parse


def _fraction(text: str) -> float:
    x = _positive_float(text, low_open=False)
    if x >= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text!r}")
    return x


def _positive_float(text: str, low_open: bool = True) -> float:
    try:
        x = float(text)
    except ValueError:
        x = math.nan
    if not math.isfinite(x) or x < 0 or (low_open and x == 0):
        raise argparse.ArgumentTypeError(f"must be a finite number {'>' if low_open else '>='} 0, got {text!r}")
    return x


def _options(args: argparse.Namespace, own: dict, other: dict, kind: str) -> dict:
    """``own``'s options from ``args`` (defaults where not given); an option of ``other`` given is an error."""
    wrong = [k for k in other if getattr(args, k) is not None]
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise ProxyError(f"{flags} do{'es' if len(wrong) == 1 else ''} not apply to --kind {kind}")
    return {k: default if getattr(args, k) is None else getattr(args, k) for k, default in own.items()}


def fit_proxy(args: argparse.Namespace) -> int:
    """Fit the proxy ``args`` describe, print its score, save it to ``args.out``; returns 0."""
    own, other = (_GNN_OPTIONS, _FINGERPRINT_OPTIONS) if args.kind == "gnn" else (_FINGERPRINT_OPTIONS, _GNN_OPTIONS)
    opts = _options(args, own, other, args.kind)  # before reading the data: a wrong option fails at once
    if not Path(args.csv).is_file():
        raise DatasetError(f"molecule table not found: {args.csv}")
    data = read_molecule_csv(args.csv, args.smiles_col, args.value_col, on_error="skip")
    print(data.summary())
    if args.kind == "gnn":
        from .gnn_proxy import fit_gnn_proxy
        every = max(1, opts["epochs"] // 10)
        proxy = fit_gnn_proxy(data, seed=args.seed, transform=args.transform, **opts,
                              on_epoch=lambda e, loss: print(f"epoch {e}/{opts['epochs']}: training loss {loss:.4f}")
                              if e % every == 0 else None)
        size = sum(p.numel() for p in proxy.parameters())
        print(f"GNNProxy: {proxy.num_layers} GINE layers, hidden {proxy.hidden}, {size:,} parameters")
        print(proxy.report if proxy.report is not None else "holdout 0: trained on every molecule, no held-out score")
    else:
        from sklearn.ensemble import RandomForestRegressor

        from .proxy import FingerprintProxy
        if opts["cv"] > len(data):
            raise DatasetError(f"--cv {opts['cv']} needs at least {opts['cv']} molecules; {data.summary()}")
        est = RandomForestRegressor(n_estimators=opts["n_estimators"], max_features="sqrt", n_jobs=-1)
        proxy = FingerprintProxy(est, transform=args.transform).fit(data, cv=opts["cv"], seed=args.seed)
        print(proxy.cv_report)
    if args.out:
        proxy.save(args.out)
        print(f"saved {args.out} (use it as a reward: task.reward_model={args.out})")
    return 0


__all__ = ["KINDS", "add_fit_arguments", "fit_proxy"]
