"""Fixed-seed training runs whose outcome a refactor must reproduce bit for bit (issue 16).

Each case trains 50 steps from a seeded initialisation, with replay (and, on fragments, a
learned backward policy), then samples at two betas. :func:`fingerprint` reduces a run to what must not change:
a SHA-256 of every parameter's bytes, each step's loss (exact ``repr``), and the sampled SMILES.

    python tests/golden/golden_runs.py --write   # record tests/golden/golden.json (before a redesign)
    python tests/golden/golden_runs.py           # compare this code with the record

Floating-point results depend on the CPU's vector unit and on torch's version, so the record
names both and the test compares only on a machine that matches (with one torch thread).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

import lgfn_graph as L
from lgfn_graph.task import TaskConfig, build_task

RECORD = Path(__file__).with_name("golden.json")
STEPS = 50


def _qed_frag():
    env, reward = build_task(TaskConfig("qed_frag"))
    model = L.ModelConfig(hidden=32, num_layers=2, heads=2, backward_policy="learned", backward_conditioning="logit")
    train = L.TrainConfig(steps=STEPS, batch_size=16, epsilon=0.1, replay_capacity=100, replay_fraction=0.5,
                          replay_priority="reward", seed=3, sample_db=False, tensorboard=False)
    return env, reward, model, train


def _atom():
    env = L.AtomEnv(("C", "N", "O"), max_atoms=5)
    # AtomEnv has no backward_actions, so no learned backward policy: sub-trajectory balance instead
    model = L.ModelConfig(hidden=32, num_layers=2, heads=2, conditioning="logit+layer", state_flow=True)
    train = L.TrainConfig(steps=STEPS, batch_size=16, epsilon=0.1, objective="subtb", replay_capacity=100,
                          replay_fraction=0.25, replay_priority="uniform", beta=L.BetaSampler(1.0, 16.0),
                          seed=5, sample_db=False, tensorboard=False)
    return env, L.QED(), model, train


CASES = {"qed_frag": _qed_frag, "atom": _atom}


def machine() -> dict:
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def fingerprint(case: str) -> dict:
    """Train ``case`` from seed and describe the outcome: parameter digest, losses, samples."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a reduction's order, and so its last bit, can depend on the threads
    try:
        env, reward, model_cfg, train_cfg = CASES[case]()
        torch.manual_seed(train_cfg.seed)
        gfn = L.TemperatureGFlowNet.build(env, model_cfg)
        losses = []
        trainer = L.Trainer(env, gfn, reward, train_cfg, callbacks=[lambda t, b, m: losses.append(repr(m["loss"]))])
        trainer.train(progress=False)
        digest = hashlib.sha256()
        for name, tensor in sorted(gfn.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        samples = {str(beta): [r["smiles"] for r in L.sample_molecules(gfn, env, reward, beta, 24, seed=7)]
                   for beta in (1.0, 16.0)}
        return {"parameters_sha256": digest.hexdigest(), "losses": losses, "samples": samples}
    finally:
        torch.set_num_threads(threads)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help=f"record {RECORD.name} instead of comparing with it")
    args = p.parse_args(argv)
    got = {"machine": machine(), "cases": {case: fingerprint(case) for case in CASES}}
    if args.write:
        RECORD.write_text(json.dumps(got, indent=1) + "\n")
        print(f"recorded {RECORD}")
        return 0
    want = json.loads(RECORD.read_text())
    same = want["cases"] == got["cases"]
    print("identical to the record" if same else "DIFFERS from the record", f"(recorded on {want['machine']}, "
          f"this machine {got['machine']})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
