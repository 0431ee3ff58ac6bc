"""Backbones by name or import path: stock PyG models train, round-trip through checkpoints and
keep the contract; mistakes are named in one line."""
import hashlib
import sys

import pytest
import torch
from torch import nn
from torch_geometric.nn import global_add_pool

import lgfn_graph as L
from lgfn_graph.checkpoint import check_same_task
from lgfn_graph.cli import main
from lgfn_graph.config import load_config
from lgfn_graph.envs import FragmentStates
from lgfn_graph.nn import BackboneContractError

HELPERS = "tests.nn.backbone_helpers"
SMALL = {"hidden": 16, "num_layers": 2, "heads": 2}


def heavy_atoms(mols):
    """A reward far cheaper than the task's QED, which would take a third of the tests' time."""
    return torch.tensor([m.GetNumAtoms() / 20.0 for m in mols])


@pytest.fixture(scope="module")
def task():
    return L.build_task(L.TaskConfig(name="tiny_frag"))[0], heavy_atoms


@pytest.fixture(scope="module")
def mixed(task):
    """A batch of states in which empty graphs (initial states) sit first, between and last."""
    env = task[0]
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(**SMALL))
    with torch.no_grad():
        grown = L.sample_trajectories(gfn, env, torch.ones(3), epsilon=1.0,
                                      generator=torch.Generator().manual_seed(0)).terminal
    empty = env.initial(1)
    return FragmentStates.cat([empty, grown[torch.tensor([0, 1])], empty, grown[torch.tensor([2])], empty])


def _digest(gfn) -> tuple[str, str]:
    """Hashes of the parameter names and shapes, and of names and values."""
    sd = gfn.state_dict()
    shapes = hashlib.sha256(";".join(f"{k}:{tuple(v.shape)}" for k, v in sd.items()).encode()).hexdigest()
    values = hashlib.sha256()
    for k, v in sd.items():
        values.update(k.encode())
        values.update(v.numpy().tobytes())
    return shapes[:16], values.hexdigest()[:16]


@pytest.mark.parametrize("config, digest", [
    ({}, ("86730d4f94e16ff4", "8d76269460ea598e")),
    ({"hidden": 32, "num_layers": 2, "conv": "gine", "conditioning": "logit+layer", "backward_policy": "learned",
      "state_flow": True}, ("096f4c673aab8e3a", "5f110805e17a7373")),
])
def test_the_default_backbone_builds_the_same_parameters_as_before(task, config, digest):
    # digests recorded before backbones could be named: same names, shapes and initial values
    torch.manual_seed(0)
    gfn = L.TemperatureGFlowNet.build(task[0], L.ModelConfig(**config))
    assert isinstance(gfn.policy.backbone, L.nn.GraphTransformer)
    assert _digest(gfn) == digest


def _train(task, config: L.ModelConfig, out=None) -> tuple[L.TemperatureGFlowNet, list[float]]:
    env, reward = task
    torch.manual_seed(0)
    gfn = L.TemperatureGFlowNet.build(env, config)
    train = L.TrainConfig(steps=50, batch_size=16, seed=0, lr=3e-3, beta=L.BetaSampler(1.0, 16.0),
                          sample_db=False, tensorboard=False)
    history = L.Trainer(env, gfn, reward, train, out).train(progress=False)
    return gfn, [m["loss"] for m in history]


def _same_samples(a, b, env) -> bool:
    beta = torch.linspace(1.0, 16.0, 12)
    with torch.no_grad():
        x = L.sample_trajectories(a, env, beta, generator=torch.Generator().manual_seed(3))
        y = L.sample_trajectories(b, env, beta, generator=torch.Generator().manual_seed(3))
    return torch.equal(x.actions, y.actions) and torch.equal(x.log_pf, y.log_pf)


@pytest.mark.parametrize("backbone, conditioning", [
    ("gin", "logit"), ("gat", "logit"), ("gat", "layer"), ("gatv2", "logit"), ("sage", "logit"), ("pna", "logit"),
    ("gps", "logit+layer"),
])
def test_a_stock_backbone_trains_and_round_trips(task, tmp_path, backbone, conditioning):
    env = task[0]
    gfn, loss = _train(task, L.ModelConfig(backbone=backbone, conditioning=conditioning, **SMALL), tmp_path)
    assert isinstance(gfn.policy.backbone, L.nn.NodeModelBackbone)
    assert sum(loss[-10:]) < sum(loss[:10]), loss
    loaded, _, state = L.load_model(tmp_path / "checkpoint.pt")
    assert state["model_config"]["backbone"] == backbone and loaded.config == gfn.config
    assert _same_samples(gfn, loaded, env)


def test_an_import_path_backbone_trains_and_round_trips_with_its_kwargs(task, tmp_path):
    env = task[0]
    config = L.ModelConfig(backbone=f"{HELPERS}:EdgeGatedGCN", backbone_kwargs={"gate_bias": 1.0}, **SMALL)
    gfn, loss = _train(task, config, tmp_path)
    assert sum(loss[-10:]) < sum(loss[:10]), loss
    model = gfn.policy.backbone.model
    assert type(model).__name__ == "EdgeGatedGCN" and model.gate.in_features == env.edge_dim
    loaded, _, state = L.load_model(tmp_path / "checkpoint.pt", trust_code=True)
    assert state["model_config"]["backbone_kwargs"] == {"gate_bias": 1.0}
    assert _same_samples(gfn, loaded, env)


def test_backbone_and_kwargs_come_from_overrides_and_yaml(tmp_path):
    cfg = load_config(None, ["model.backbone=pna", "model.backbone_kwargs.towers=2", "model.hidden=16",
                             "model.backbone_kwargs.deg=[0, 3, 5, 1]"])
    assert cfg.model.backbone == "pna" and cfg.model.backbone_kwargs == {"towers": 2, "deg": [0, 3, 5, 1]}
    L.config.write_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_pna_reads_deg_from_kwargs_or_the_environment(task):
    env = task[0]

    def avg_degree(kwargs):
        gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(backbone="pna", backbone_kwargs=kwargs, **SMALL))
        return gfn.policy.backbone.model.convs[0].aggr_module.init_avg_deg_lin

    assert avg_degree({}) == pytest.approx(sum(range(env.max_degree + 1)) / (env.max_degree + 1))
    assert avg_degree({"deg": [0, 1]}) == 1.0


@pytest.mark.parametrize("backbone", ["gps", "gat"])
def test_empty_graphs_anywhere_in_a_batch_get_embeddings_and_finite_gradients(task, mixed, backbone):
    env = task[0]
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(backbone=backbone, conditioning="layer", **SMALL))
    beta = torch.linspace(1.0, 8.0, len(mixed))
    node, graph = gfn.policy.embed(env.to_graph(mixed), beta)
    assert graph.shape == (len(mixed), 16) and bool(graph.isfinite().all())
    (node.sum() + graph.sum()).backward()
    for name, p in [*gfn.policy.backbone.named_parameters(), *gfn.policy.beta_embedding.named_parameters()]:
        assert p.grad is not None and bool(p.grad.isfinite().all()) and bool(p.grad.abs().max() > 0), name
    # a batch of empty graphs only (the first sampling step) skips the model
    node, graph = gfn.policy.embed(env.to_graph(env.initial(4)), torch.ones(4))
    assert node.shape == (0, 16) and graph.shape == (4, 16)


class NoSizePooling(nn.Module):
    """A backbone that pools without ``size=num_graphs``: trailing empty graphs drop out."""

    def __init__(self, node_dim, width):
        super().__init__()
        self.lin = nn.Linear(node_dim, width)

    def forward(self, data, cond=None):
        h = self.lin(data.x)
        return h, global_add_pool(h, data.batch)


def _policy(env, backbone):
    return L.Policy(env.forward_action_types, backbone, L.nn.ActionHeads(env.forward_action_types, 16))


def test_contract_mistakes_are_named_in_one_line(task, mixed):
    env = task[0]
    data, beta = env.to_graph(mixed), torch.ones(len(mixed))
    with pytest.raises(BackboneContractError, match=r"^backbone returned 5 graph embeddings for a batch of 6 "
                                                    r"graphs \(pool with size=num_graphs"):
        _policy(env, NoSizePooling(env.node_dim, 16)).embed(data, beta)
    ends_full = env.to_graph(mixed[torch.arange(len(mixed) - 1)])  # no trailing empty graph: pooling fits
    with pytest.raises(BackboneContractError, match="^backbone returned node embeddings of width 8, expected hidden=16$"):
        _policy(env, NoSizePooling(env.node_dim, 8)).embed(ends_full, beta[1:])
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(backbone=f"{HELPERS}:HalfWidth", **SMALL))
    with pytest.raises(BackboneContractError,
                       match="^backbone model HalfWidth returned node embeddings of width 8, expected hidden=16$"):
        gfn.policy.embed(data, beta)

    class NodesOnly(nn.Module):
        def forward(self, data, cond=None):
            return data.x

    with pytest.raises(BackboneContractError, match="^backbone returned Tensor, expected a pair"):
        _policy(env, NodesOnly()).embed(data, beta)


@pytest.mark.parametrize("kwargs, message", [
    ({"backbone": "gatt"}, "ModelConfig.backbone must be one of ('graph_transformer', 'gin', 'gat', 'gatv2', "
                           "'sage', 'pna', 'gps') or an import path 'package.module:Class', got 'gatt'"),
    ({"backbone": "gat", "backbone_kwargs": {"dropuot": 0.1}},
     "ModelConfig.backbone_kwargs.dropuot is not a keyword argument of backbone 'gat' (did you mean 'dropout'?)"),
    ({"backbone": "gin", "backbone_kwargs": {"hidden_channels": 8}},
     "ModelConfig.backbone_kwargs.hidden_channels is set from ModelConfig.hidden, not from backbone_kwargs"),
    ({"backbone": "gat", "backbone_kwargs": {"edge_dim": 3}},
     "ModelConfig.backbone_kwargs.edge_dim is set from the environment's edge_dim, not from backbone_kwargs"),
    ({"backbone_kwargs": {"dropout": 0.1}},
     "ModelConfig.backbone_kwargs must be empty for backbone 'graph_transformer' (its settings are hidden, "
     "num_layers, heads and conv), got {'dropout': 0.1}"),
    ({"backbone": "gin", "backbone_kwargs": {"x": object()}}, "ModelConfig.backbone_kwargs.x must be plain data"),
    ({"backbone": "no_such_package.gnn:GNN"},
     "ModelConfig.backbone cannot import 'no_such_package.gnn:GNN' (ModuleNotFoundError: No module named "
     "'no_such_package')"),
    ({"backbone": f"{HELPERS}:Nope"}, f"ModelConfig.backbone cannot import '{HELPERS}:Nope' (AttributeError"),
    ({"backbone": "math:pi"}, "ModelConfig.backbone 'math:pi' is not a torch.nn.Module class"),
    ({"backbone": "gin", "backbone_kwargs": {"aggr": "median_of_three"}},
     "ModelConfig.backbone_kwargs cannot build backbone 'gin' with {'aggr': 'median_of_three'} (ValueError: "),
    ({"backbone": "gps", "hidden": 30}, "ModelConfig.hidden must be divisible by heads (4) with backbone 'gps', "
                                        "got 30"),
])
def test_bad_names_and_kwargs_are_named(kwargs, message):
    with pytest.raises(ValueError) as e:
        L.ModelConfig(**kwargs)
    assert str(e.value).startswith(message), str(e.value)


def test_a_bad_kwarg_override_names_the_dotted_key():
    with pytest.raises(L.ConfigError) as e:
        load_config(None, ["model.backbone=sage", "model.backbone_kwargs.agr=max"])
    assert str(e.value) == ("override 'model.backbone_kwargs.agr=max': 'model.backbone_kwargs.agr' is not a keyword "
                            "argument of backbone 'sage' (did you mean 'aggr'?)")


def test_an_import_path_that_is_gone_at_load_time_is_a_checkpoint_error(task, tmp_path, monkeypatch):
    env, reward = task
    (tmp_path / "my_gnn_module.py").write_text(
        "from tests.nn.backbone_helpers import EdgeGatedGCN\n\nclass MyGNN(EdgeGatedGCN):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(backbone="my_gnn_module:MyGNN", **SMALL))
    L.save_checkpoint(tmp_path / "c.pt", gfn, env, step=0)
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))
    sys.path.remove(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_gnn_module")
    with pytest.raises(L.CheckpointError, match=r"cannot rebuild the model it describes: ModelConfig.backbone cannot "
                                                r"import 'my_gnn_module:MyGNN' \(ModuleNotFoundError"):
        L.load_model(tmp_path / "c.pt", trust_code=True)


def test_checkpoints_from_before_backbones_still_load_and_resume(task, tmp_path):
    env = task[0]
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(**SMALL))
    L.save_checkpoint(tmp_path / "c.pt", gfn, env, step=0)
    state = L.load_checkpoint(tmp_path / "c.pt")
    for key in ("backbone", "backbone_kwargs"):  # what a checkpoint written before held
        del state["model_config"][key]
    check_same_task(tmp_path / "c.pt", state, gfn, env)


def test_a_hand_built_model_says_why_it_cannot_be_rebuilt_in_one_line(task, tmp_path):
    env = task[0]
    policy = _policy(env, NoSizePooling(env.node_dim, 16))
    L.save_checkpoint(tmp_path / "c.pt", L.TemperatureGFlowNet(policy, L.LogZ()), env, step=0)
    with pytest.raises(L.CheckpointError) as e:
        L.load_model(tmp_path / "c.pt")
    assert "built by hand" in str(e.value) and "\n" not in str(e.value) and len(str(e.value)) < 600, str(e.value)


def test_lgfn_train_and_sample_with_a_named_backbone(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", "task.name=tiny_frag", "train.steps=2",
                 "train.batch_size=4", "eval.betas=2", "eval.n=4", "model.backbone=gatv2", "model.hidden=16",
                 "model.num_layers=1", "model.heads=2", "model.backbone_kwargs.dropout=0.0"]) == 0
    assert main(["sample", "--checkpoint", str(out / "checkpoint.pt"), "--beta", "4", "--n", "3",
                 "--out", str(tmp_path / "s.csv")]) == 0
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 4
