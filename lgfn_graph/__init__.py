"""lgfn_graph: temperature-conditional GFlowNets with logit scaling on PyTorch Geometric."""
from . import distributed, exact, metrics
from .betas import BETA_DISTRIBUTIONS, BetaRangeWarning, BetaSampler, check_beta
from .categorical import ActionType, GraphActionCategorical
from .buffer import ReplayBuffer
from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from .conditioning import BetaEmbedding, BetaEncoding, LogitScaler, LogZ
from .config import ConfigError, EvalConfig, RunConfig, from_dict, load_config, to_dict
from .datasets import DatasetError, MoleculeDataset, RowIssue, read_molecule_csv
from .envs import AtomEnv, AtomStates, Env, FragmentEnv, FragmentStates, PaddedStates
from .evaluate import sample_molecules, temperature_sweep
from .fragments import Fragment, FragmentLibrary, FragmentLibraryError
from .losses import OBJECTIVES, detailed_balance, subtrajectory_balance, trajectory_balance
from .policy import BackwardPolicy, ModelConfig, Policy, StateFlow, TemperatureGFlowNet
from .proxy_base import ProxyError
from .pyg import SampleData, SampleDataset, rows_to_data, sample_pyg, smiles_to_data
from .featurize import FeaturizeError, mol_to_graph
from .gnn_proxy import GNNProxy, HoldoutReport, fit_gnn_proxy, load_proxy_reward
from .graph_reward import GraphModelReward
from .metrics import ModeTracker, correlations, log_likelihood, temperature_response, top_k_diversity, top_k_reward
from .parallel_reward import ParallelReward
from .rewards import (QED, LogP, MolecularWeightWindow, Product, RewardError, RewardFn, RewardResult, SmilesReward,
                      SyntheticAccessibility, WeightedSum, Window, log_reward, qed_sa, score_molecules)
from .runfolder import RunFolderBusy, RunFolderError, RunFolderLock
from .sampledb import SampleDB
from .sampler import (StepTerms, Trajectories, TrajectoryTerms, evaluate_trajectories, sample_and_evaluate,
                      sample_backward_trajectories, sample_trajectories, step_terms)
from .seh_proxy import SEHProxy, SEHProxyError, SEHReward, WeightsUnavailableError, load_seh_proxy
from .task import TASKS, TaskConfig, build_task
from .trainer import Objective, TrainConfig, Trainer, TrainingInterrupted

__version__ = "0.1.0"

__all__ = [
    "ActionType", "AtomEnv", "AtomStates", "BackwardPolicy", "BETA_DISTRIBUTIONS", "BetaEmbedding", "BetaEncoding",
    "BetaRangeWarning", "BetaSampler", "build_task", "check_beta", "CheckpointError", "ConfigError", "correlations",
    "DatasetError",
    "detailed_balance", "distributed", "Env", "EvalConfig", "exact", "FeaturizeError", "Fragment", "FragmentEnv", "FragmentLibrary",
    "FragmentLibraryError", "FragmentStates", "from_dict", "fit_gnn_proxy", "GNNProxy", "GraphModelReward",
    "HoldoutReport", "load_proxy_reward", "ProxyError", "GraphActionCategorical", "load_checkpoint",
    "load_config", "load_model", "load_seh_proxy", "log_likelihood", "log_reward", "LogitScaler", "LogP", "LogZ",
    "metrics", "ModelConfig", "ModeTracker", "mol_to_graph", "MolecularWeightWindow", "MoleculeDataset", "Objective", "OBJECTIVES",
    "PaddedStates", "ParallelReward", "Policy", "Product", "QED", "qed_sa", "read_molecule_csv", "ReplayBuffer", "RewardError",
    "rows_to_data", "sample_pyg", "SampleData", "SampleDataset", "smiles_to_data",
    "RewardFn", "RewardResult", "RowIssue", "RunConfig", "RunFolderBusy", "RunFolderError", "RunFolderLock",
    "evaluate_trajectories", "sample_and_evaluate", "sample_backward_trajectories", "sample_molecules", "StepTerms",
    "step_terms",
    "sample_trajectories", "SampleDB", "save_checkpoint", "score_molecules", "SEHProxy", "SEHProxyError",
    "SEHReward", "SmilesReward", "StateFlow", "subtrajectory_balance", "SyntheticAccessibility", "TaskConfig",
    "TASKS", "temperature_response", "temperature_sweep", "TemperatureGFlowNet", "to_dict", "top_k_diversity",
    "top_k_reward", "TrainConfig", "Trainer", "TrainingInterrupted", "Trajectories", "TrajectoryTerms", "trajectory_balance",
    "WeightedSum", "WeightsUnavailableError", "Window",
]


def __getattr__(name):
    # the scikit-learn proxy is imported on first use: scikit-learn adds ~1 s to every import
    if name in ("FingerprintProxy", "CVReport"):
        from . import proxy
        return getattr(proxy, name)
    raise AttributeError(f"module 'lgfn_graph' has no attribute {name!r}")
