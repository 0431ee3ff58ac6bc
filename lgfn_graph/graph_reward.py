"""A reward from any PyG model of molecular graphs: RDKit molecules -> graphs -> one score each.

Molecules go straight to graphs (:func:`~lgfn_graph.featurize.mol_to_graph` by default), with no
SMILES round trip, and the model scores a :class:`~torch_geometric.data.Batch` of them.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from rdkit import Chem
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from .featurize import FeaturizeError, mol_to_graph
from .rewards import RewardError
from .smiles import describe_molecule

TRANSFORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": lambda x: x.clamp_min(0), "softplus": F.softplus, "exp": torch.exp}
"""Output transforms that make a score which can be negative a valid (non-negative) reward, by name."""


def featurize_molecules(mols: Sequence[Chem.Mol], featurize: Callable[[Chem.Mol], Data] = mol_to_graph,
                        who: str = "reward") -> list[Data]:
    """The graphs of ``B`` molecules, ``featurize(mol)`` each (default :func:`mol_to_graph`:
    ``x [N, 71]``, ``edge_index [2, E]``, ``edge_attr [E, 4]``).

    Raises :class:`~lgfn_graph.featurize.FeaturizeError` naming ``who``, the index and the SMILES
    of the first molecule that cannot be featurised.
    """
    graphs = []
    for i, mol in enumerate(mols):
        try:
            graphs.append(featurize(mol))
        except Exception as e:  # a user's featurizer may raise anything; name the molecule
            why = str(e) if isinstance(e, FeaturizeError) else f"{type(e).__name__}: {e}"
            raise FeaturizeError(f"{who}: molecule {i} ({describe_molecule(mol)}) cannot be featurised: {why}") from e
    return graphs


class GraphModelReward:
    """Scores molecules with a PyG model of their graphs: ``reward(mols) -> [B]``.

    ``reward(mols)`` equals ``transform(model(Batch.from_data_list([featurize(m) for m in mols])))``,
    computed ``batch_size`` molecules at a time, without gradients, in eval mode (the model's
    own mode is restored afterwards).

    Args:
        model: any ``nn.Module`` (or callable) taking a ``Batch`` of ``B`` graphs and returning
            ``[B]`` or ``[B, 1]`` scores.
        transform: ``None`` (default), a name in :data:`TRANSFORMS` (``"relu"``, ``"softplus"``,
            ``"exp"``) or a function ``[B] -> [B]``, applied to the model's output so that a
            score that can be negative becomes a valid reward.
        batch_size: molecules per forward pass (>= 1, default 256).
        device: where the batches go; the model is moved there. ``None`` (default): the device
            of the model's first parameter (the CPU for a model without any).
        featurize: ``Mol -> Data``, default :func:`~lgfn_graph.featurize.mol_to_graph`.

    Shapes:
        - ``__call__``: ``B`` molecules -> ``[B]`` float32 on the CPU.
        - ``score_batch``: ``Batch`` of ``B`` graphs -> ``[B]`` float32 on the CPU.

    A molecule that cannot be featurised raises :class:`~lgfn_graph.featurize.FeaturizeError`
    naming its index and SMILES (:func:`~lgfn_graph.rewards.score_molecules` then isolates it);
    an output of another shape raises :class:`~lgfn_graph.rewards.RewardError`.

    Example (a "model" counting each graph's atoms)::

        >>> from rdkit import Chem
        >>> from torch_geometric.utils import scatter
        >>> def heavy_atoms(batch):  # a module or function of a Batch of B graphs -> [B]
        ...     ones = torch.ones(batch.num_nodes)
        ...     return scatter(ones, batch.batch, dim_size=batch.num_graphs, reduce="sum")
        >>> reward = GraphModelReward(heavy_atoms, transform="softplus")
        >>> reward([Chem.MolFromSmiles("CCO"), Chem.MolFromSmiles("c1ccccc1")])  # softplus(3), softplus(6)
        tensor([3.0486, 6.0025])
    """

    def __init__(self, model: nn.Module | Callable[[Batch], Tensor], transform: str | Callable[[Tensor], Tensor] | None = None,
                 batch_size: int = 256, device: str | torch.device | None = None,
                 featurize: Callable[[Chem.Mol], Data] = mol_to_graph):
        if isinstance(transform, str) and transform not in TRANSFORMS:
            raise ValueError(f"transform must be None, a function or one of {sorted(TRANSFORMS)}, got {transform!r}")
        if not callable(model):
            raise TypeError(f"model must be a module or function of a Batch, got {model!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if device is not None and isinstance(model, nn.Module):
            model.to(device)
        self.model, self.batch_size, self.featurize = model, batch_size, featurize
        self.transform = TRANSFORMS[transform] if isinstance(transform, str) else transform
        self.device = torch.device(device) if device is not None else _device_of(model)
        self.__name__ = f"GraphModelReward({type(model).__name__})"

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        graphs = featurize_molecules(mols, self.featurize, self.__name__)
        out = [self.score_batch(Batch.from_data_list(graphs[i:i + self.batch_size]))
               for i in range(0, len(graphs), self.batch_size)]
        return torch.cat(out) if out else torch.zeros(0)

    def score_batch(self, batch: Batch) -> Tensor:
        """The transformed model output of a ``Batch`` of ``B`` graphs, ``[B]`` float32 on the CPU."""
        training = getattr(self.model, "training", False)
        if isinstance(self.model, nn.Module):
            self.model.eval()  # no dropout, batch-norm statistics fixed: a reward is a fixed function
        try:
            with torch.no_grad():
                out = self.model(batch.to(self.device))
        finally:
            if isinstance(self.model, nn.Module):
                self.model.train(training)
        b = batch.num_graphs
        if not isinstance(out, Tensor) or tuple(out.shape) not in ((b,), (b, 1)):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise RewardError(f"{self.__name__}: the model returned {got} for a batch of {b} graphs; "
                              f"expected a tensor of shape ({b},) or ({b}, 1)")
        out = out.reshape(b).float()
        return (out if self.transform is None else self.transform(out)).cpu()


def _device_of(model) -> torch.device:
    params = model.parameters() if isinstance(model, nn.Module) else iter(())
    first = next(params, None)
    return first.device if first is not None else torch.device("cpu")


__all__ = ["GraphModelReward", "TRANSFORMS", "featurize_molecules"]
