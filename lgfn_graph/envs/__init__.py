"""Environments: states, legal actions and transitions, batched over states."""
from .fragment import FragmentEnv, FragmentStates

__all__ = ["FragmentEnv", "FragmentStates"]
