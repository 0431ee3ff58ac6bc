r"""Exact evaluation on small tasks: enumerate every state and compute the model's terminal
distribution :math:`p(x \mid \beta)` by dynamic programming over the state DAG (no sampling).

For any environment with ``initial``, ``forward_masks``, ``to_graph``, ``step``, ``is_stop``,
states with ``__getitem__`` / ``cat``, and ``canonical_key(states, i)`` naming the object a
state is (isomorphic states share a key). States are merged by key and the model is evaluated
on one representative per key, which is exact for a permutation-equivariant model (every GNN
here is): isomorphic states get the same distribution over children up to relabelling.

Example: two fragments, C and O, each with one attachment atom, at most two to a molecule,
make five molecules. Under the reward ``len(SMILES)`` the target at ``beta = 1`` gives CC, CO
and OO twice the probability of C and O. A policy whose logits are all zero picks uniformly
among the legal actions: C or O first (1/2 each), then stop, attach C or attach O (1/3 each),
so CO, reached two ways, gets 1/3 and every other molecule 1/6::

    >>> import torch
    >>> import lgfn_graph as L
    >>> from rdkit import Chem
    >>> env = L.FragmentEnv(L.FragmentLibrary.from_pairs([("C", [0]), ("O", [0])]), max_fragments=2)
    >>> space = enumerate_states(env)
    >>> [Chem.MolToSmiles(env.to_mol(space.states, i)) for i in range(space.num_states)]
    ['', 'C', 'O', 'CC', 'CO', 'OO']
    >>> log_r = terminal_log_rewards(space, env, L.SmilesReward(lambda smiles: [len(s) for s in smiles]))
    >>> q = target_distribution(log_r, beta=1.0)
    >>> [round(x, 4) for x in q.tolist()]
    [0.0, 0.125, 0.125, 0.25, 0.25, 0.25]
    >>> gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=8, num_layers=1, heads=1))
    >>> with torch.no_grad():
    ...     for w in gfn.policy.heads.parameters():
    ...         _ = w.zero_()
    >>> p = exact_terminal_distribution(gfn, env, space, beta=1.0)
    >>> [round(x, 4) for x in p.tolist()]
    [0.0, 0.1667, 0.1667, 0.1667, 0.3333, 0.1667]
    >>> round(float((p - q).abs().sum()), 4)  # the L1 distance: 2/24 + 2/12 + 1/12
    0.3333
    >>> l1_distance(gfn, env, space, log_r, betas=[1.0, 2.0])  # zero logits ignore beta; the target sharpens
    tensor([0.3333, 0.4762])
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
from torch import Tensor

from .betas import check_beta
from .categorical import GraphActionCategorical, element_batch
from .rewards import RewardFn, log_reward as checked_log_reward
from .sampler import model_device, model_inputs


@dataclass
class StateSpace:
    """Every state reachable from the initial state, one representative per canonical key.

    Attributes:
        states: the ``S`` representatives; index 0 is the initial state.
        keys: their canonical keys, ``S`` strings.
        level: long ``[S]``, the longest number of actions from the initial state (a
            topological order of the DAG).
        src: long ``[A]``, the state each legal forward action starts from.
        actions: long ``[A, 3]``, the action, in ``src``'s representative's indexing.
        dst: long ``[A]``, the state it leads to; ``-1`` for ``stop``.
    """

    states: object
    keys: list[str]
    level: Tensor
    src: Tensor
    actions: Tensor
    dst: Tensor

    @property
    def num_states(self) -> int:
        return len(self.keys)

    @property
    def terminal(self) -> Tensor:
        """bool ``[S]``: states where ``stop`` is legal (the terminal objects)."""
        t = torch.zeros(self.num_states, dtype=torch.bool)
        t[self.src[self.dst < 0]] = True
        return t


def _legal_actions(env, states) -> tuple[Tensor, Tensor]:
    """``(state [A], action [A, 3])`` of every legal forward action of a batch of states."""
    masks = env.forward_masks(states)
    data = env.to_graph(states)
    batches = [element_batch(data, t.level) for t in env.forward_action_types]
    cat = GraphActionCategorical([m.float() for m in masks], masks, batches, data.num_graphs)
    graph, actions, _ = cat.legal_actions()
    return graph, actions


def enumerate_states(env, max_states: int = 200_000, batch_size: int = 4096) -> StateSpace:
    """Breadth-first enumeration of the state DAG, merging states by ``env.canonical_key``.

    Raises ``ValueError`` beyond ``max_states`` states (the task is not small).
    """
    init = env.initial(1)
    keys = [env.canonical_key(init, 0)]
    index = {keys[0]: 0}
    reps = [init]
    src, acts, dst = [], [], []
    frontier = [0]
    while frontier:
        nxt = []
        for start in range(0, len(frontier), batch_size):
            ids = torch.tensor(frontier[start:start + batch_size])
            states = type(init).cat([reps[i] for i in ids.tolist()])
            g, a = _legal_actions(env, states)
            stop = env.is_stop(a)
            child = env.step(states[g[~stop]], a[~stop])
            child_ids = []
            for j in range(len(child)):
                k = env.canonical_key(child, j)
                if k not in index:
                    if len(keys) >= max_states:
                        raise ValueError(f"more than max_states={max_states} states: not an enumerable task")
                    index[k] = len(keys)
                    keys.append(k)
                    reps.append(child[j])
                    nxt.append(index[k])
                child_ids.append(index[k])
            d = torch.full((a.shape[0],), -1, dtype=torch.long)
            d[~stop] = torch.tensor(child_ids, dtype=torch.long)
            src.append(ids[g])
            acts.append(a)
            dst.append(d)
        frontier = nxt
    src_t, dst_t = torch.cat(src), torch.cat(dst)
    return StateSpace(type(init).cat(reps), keys, _longest_path_levels(len(keys), src_t, dst_t), src_t,
                      torch.cat(acts), dst_t)


def _longest_path_levels(n: int, src: Tensor, dst: Tensor) -> Tensor:
    """Longest path length from state 0 (Kahn's algorithm); raises on a cycle."""
    edge = dst >= 0
    s, d = src[edge].tolist(), dst[edge].tolist()
    out: list[list[int]] = [[] for _ in range(n)]
    indeg = [0] * n
    for a, b in zip(s, d):
        out[a].append(b)
        indeg[b] += 1
    level = [0] * n
    queue = deque(i for i in range(n) if indeg[i] == 0)
    seen = 0
    while queue:
        u = queue.popleft()
        seen += 1
        for v in out[u]:
            level[v] = max(level[v], level[u] + 1)
            indeg[v] -= 1
            if indeg[v] == 0:
                queue.append(v)
    if seen != n:
        raise ValueError("the state graph has a cycle; exact evaluation needs a DAG")
    return torch.tensor(level, dtype=torch.long)


@torch.no_grad()
def action_log_probs(gfn, env, space: StateSpace, beta: float, batch_size: int = 2048) -> Tensor:
    """``log pi(a | s, beta)`` of every action of the space, ``[A]``."""
    b = float(check_beta(beta))
    dev = model_device(gfn)
    out = torch.empty(space.actions.shape[0])
    order = torch.argsort(space.src, stable=True)
    bounds = torch.searchsorted(space.src[order], torch.arange(0, space.num_states + batch_size, batch_size))
    for c, start in enumerate(range(0, space.num_states, batch_size)):
        ids = torch.arange(start, min(start + batch_size, space.num_states))
        states = space.states[ids]
        data, masks, _ = model_inputs(env, states, dev)
        cat = gfn.policy(data, torch.full((len(ids),), b, device=dev), masks)
        rows = order[bounds[c]:bounds[c + 1]]
        out[rows] = cat.log_prob(space.actions[rows].to(dev), (space.src[rows] - start).to(dev)).float().cpu()
    return out


def exact_terminal_distribution(gfn, env, space: StateSpace, beta: float) -> Tensor:
    r"""The model's exact probability of ending at each state, float64 ``[S]`` (0 where
    ``stop`` is illegal; sums to 1), by forward dynamic programming:
    :math:`P(s') = \sum_{(s, a) \to s'} P(s)\, \pi(a \mid s, \beta)`, then
    :math:`p(x) = P(x)\, \pi(\mathrm{stop} \mid x, \beta)`."""
    prob = action_log_probs(gfn, env, space, beta).double().exp()
    reach = torch.zeros(space.num_states, dtype=torch.float64)
    reach[0] = 1.0
    term = torch.zeros_like(reach)
    src_level = space.level[space.src]
    for lev in range(int(space.level.max()) + 1):
        sel = (src_level == lev).nonzero().flatten()
        flow = reach[space.src[sel]] * prob[sel]
        stop = space.dst[sel] < 0
        term.index_add_(0, space.src[sel][stop], flow[stop])
        reach.index_add_(0, space.dst[sel][~stop], flow[~stop])
    return term


def terminal_log_rewards(space: StateSpace, env, reward: RewardFn, floor: float = 1e-8) -> Tensor:
    """``log R(x)`` of every terminal state (``-inf`` elsewhere), float64 ``[S]``."""
    idx = space.terminal.nonzero().flatten()
    mols = [env.to_mol(space.states, int(i)) for i in idx]
    out = torch.full((space.num_states,), float("-inf"), dtype=torch.float64)
    out[idx] = checked_log_reward(reward, mols, floor).double()
    return out


def target_distribution(log_reward: Tensor, beta: float) -> Tensor:
    r""":math:`R(x)^\beta / Z(\beta)` over the states with finite ``log_reward`` ``[S]``."""
    b = float(check_beta(beta))
    return torch.softmax(b * log_reward.double(), 0)


def l1_distance(gfn, env, space: StateSpace, log_reward: Tensor, betas) -> Tensor:
    """``sum_x |p(x | beta) - R(x)^beta / Z(beta)|`` at each beta, ``[len(betas)]`` (0 to 2)."""
    return torch.tensor([float((exact_terminal_distribution(gfn, env, space, b)
                                - target_distribution(log_reward, b)).abs().sum()) for b in betas])


__all__ = ["StateSpace", "enumerate_states", "action_log_probs", "exact_terminal_distribution",
           "terminal_log_rewards", "target_distribution", "l1_distance"]
