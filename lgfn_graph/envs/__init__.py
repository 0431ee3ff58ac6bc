"""Environments: states, legal actions and transitions, batched over states."""
from .atom import AtomEnv, AtomStates
from .fragment import FragmentEnv, FragmentStates

__all__ = ["AtomEnv", "AtomStates", "FragmentEnv", "FragmentStates"]
