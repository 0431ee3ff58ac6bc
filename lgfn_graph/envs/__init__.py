"""Environments: states, legal actions and transitions, batched over states.

:class:`Env` is the contract every environment meets; :class:`PaddedStates` the batch container
its states subclass."""
from .base import Env, PaddedStates
from .atom import AtomEnv, AtomStates
from .fragment import FragmentEnv, FragmentStates

__all__ = ["AtomEnv", "AtomStates", "Env", "FragmentEnv", "FragmentStates", "PaddedStates"]
