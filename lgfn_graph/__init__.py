"""lgfn_graph: temperature-conditional GFlowNets with logit scaling on PyTorch Geometric."""
from .betas import BetaSampler, check_beta
from .categorical import ActionType, GraphActionCategorical
from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from .conditioning import BetaEmbedding, LogitScaler, LogZ
from .envs import FragmentEnv, FragmentStates
from .evaluate import sample_molecules, temperature_sweep
from .fragments import Fragment, FragmentLibrary, FragmentLibraryError
from .losses import trajectory_balance
from .policy import ModelConfig, Policy, TemperatureGFlowNet
from .rewards import QED, Product, RewardError, SyntheticAccessibility, log_reward, qed_sa
from .sampler import Trajectories, sample_trajectories
from .trainer import TrainConfig, Trainer

__version__ = "0.1.0"

__all__ = [
    "ActionType", "BetaEmbedding", "BetaSampler", "CheckpointError", "Fragment", "FragmentEnv", "FragmentLibrary",
    "FragmentLibraryError", "FragmentStates", "GraphActionCategorical", "LogZ", "LogitScaler", "ModelConfig",
    "Policy", "Product", "QED", "RewardError", "SyntheticAccessibility", "TemperatureGFlowNet", "TrainConfig",
    "Trainer", "Trajectories", "check_beta", "load_checkpoint", "load_model", "log_reward", "qed_sa",
    "sample_molecules", "sample_trajectories", "save_checkpoint", "temperature_sweep", "trajectory_balance",
]
