"""lgfn_graph: temperature-conditional GFlowNets with logit scaling on PyTorch Geometric."""
from . import exact
from .betas import BETA_DISTRIBUTIONS, BetaSampler, check_beta
from .categorical import ActionType, GraphActionCategorical
from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from .conditioning import BetaEmbedding, BetaEncoding, LogitScaler, LogZ
from .datasets import DatasetError, MoleculeDataset, RowIssue, read_molecule_csv
from .envs import AtomEnv, AtomStates, FragmentEnv, FragmentStates
from .evaluate import sample_molecules, temperature_sweep
from .fragments import Fragment, FragmentLibrary, FragmentLibraryError
from .losses import OBJECTIVES, detailed_balance, subtrajectory_balance, trajectory_balance
from .policy import BackwardPolicy, ModelConfig, Policy, StateFlow, TemperatureGFlowNet
from .rewards import (QED, LogP, MolecularWeightWindow, Product, RewardError, RewardFn, RewardResult, SmilesReward,
                      SyntheticAccessibility, WeightedSum, Window, log_reward, qed_sa, score_molecules)
from .sampler import Replay, Trajectories, replay, sample_trajectories
from .seh_proxy import SEHProxy, SEHProxyError, SEHReward, WeightsUnavailableError, load_seh_proxy
from .trainer import TrainConfig, Trainer

__version__ = "0.1.0"

__all__ = [
    "ActionType", "AtomEnv", "AtomStates", "BETA_DISTRIBUTIONS", "BackwardPolicy", "BetaEmbedding", "BetaEncoding",
    "BetaSampler", "CheckpointError", "DatasetError", "Fragment", "FragmentEnv", "FragmentLibrary",
    "FragmentLibraryError", "FragmentStates", "GraphActionCategorical", "LogP", "LogZ", "LogitScaler",
    "ModelConfig", "MolecularWeightWindow", "MoleculeDataset", "OBJECTIVES", "Policy", "Product", "QED", "Replay",
    "RewardError", "RewardFn", "RewardResult", "RowIssue", "SEHProxy", "SEHProxyError", "SEHReward", "SmilesReward",
    "StateFlow", "SyntheticAccessibility", "TemperatureGFlowNet", "TrainConfig", "Trainer", "Trajectories",
    "WeightedSum", "WeightsUnavailableError", "Window", "check_beta", "detailed_balance", "exact", "load_checkpoint",
    "load_model", "load_seh_proxy", "log_reward", "qed_sa", "read_molecule_csv", "replay", "sample_molecules",
    "sample_trajectories", "save_checkpoint", "score_molecules", "subtrajectory_balance", "temperature_sweep",
    "trajectory_balance",
]


def __getattr__(name):
    # the scikit-learn proxy is imported on first use: scikit-learn adds ~1 s to every import
    if name in ("FingerprintProxy", "CVReport", "ProxyError"):
        from . import proxy
        return getattr(proxy, name)
    raise AttributeError(f"module 'lgfn_graph' has no attribute {name!r}")
