"""Batched trajectory sampling, and the model's terms along trajectories.

Every sampling step acts on all unfinished trajectories at once. The model's terms at a batch of
states (log P_F, learned log P_B, log F) are computed in one place, :func:`step_terms`: the
sampler calls it once per time step, :func:`evaluate_trajectories` once over every state of
stored trajectories, and both lay its rows out as the same :class:`TrajectoryTerms`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .betas import check_beta
from .categorical import GraphActionCategorical, element_batch
from .policy import ModelConfig, TemperatureGFlowNet, uniform_backward_log_prob


@dataclass
class Trajectories:
    """``B`` trajectories of at most ``T`` actions, padded after each one stops.

    Attributes:
        states: ``T + 1`` batches of ``B`` states; ``states[t]`` is each trajectory's state
            before its action ``t`` (a finished trajectory repeats its terminal state).
        actions: long ``[T, B, 3]``, ``-1`` after the stop action.
        log_pf: ``[B, T]``, forward log-probabilities (0 after the stop).
        log_pb: ``[B, T]``, uniform backward log-probabilities (0 for the stop and after).
        length: long ``[B]``, actions per trajectory, the stop included.
        beta: ``[B]``, the inverse temperature each trajectory was sampled at.
        backward_actions: long ``[T, B, 3]`` or ``None``: the backward action at
            ``states[t + 1]`` that leads to ``states[t]`` (``-1`` for the stop and after). When
            ``None`` it is ``env.backward_actions(states[t], actions[t])``.
    """

    states: list
    actions: Tensor
    log_pf: Tensor
    log_pb: Tensor
    length: Tensor
    beta: Tensor
    backward_actions: Tensor | None = None

    @property
    def terminal(self):
        """The final states, ``B`` of them."""
        return self.states[-1]

    def __len__(self) -> int:
        return self.beta.shape[0]

    @staticmethod
    def cat(parts: list["Trajectories"], env=None) -> "Trajectories":
        """Concatenate batches of trajectories, padding the shorter ones. ``env`` supplies
        ``backward_actions`` for parts that lack them when others have them; an env without
        them (``has_backward_actions`` false: no learned backward policy possible) drops them."""
        T = max(p.actions.shape[0] for p in parts)
        # only a learned backward policy reads them, and it needs an env that can fill them in
        with_bwd = any(p.backward_actions is not None for p in parts) and (
            all(p.backward_actions is not None for p in parts) or (env is not None and env.has_backward_actions))

        def pad(x: Tensor, value, dim: int) -> Tensor:
            shape = list(x.shape)
            shape[dim] = T - x.shape[dim]
            return torch.cat([x, torch.full(shape, value, dtype=x.dtype)], dim)

        def bwd(p: "Trajectories") -> Tensor:
            if p.backward_actions is not None:
                return p.backward_actions
            if env is None:
                raise ValueError("Trajectories.cat needs env to fill in backward actions")
            return torch.stack([undo_actions(env, p.states[t], p.actions[t]) for t in range(p.actions.shape[0])])

        states = [type(parts[0].states[0]).cat([p.states[min(t, len(p.states) - 1)] for p in parts])
                  for t in range(T + 1)]
        return Trajectories(states, torch.cat([pad(p.actions, -1, 0) for p in parts], 1),
                            torch.cat([pad(p.log_pf, 0.0, 1) for p in parts]),
                            torch.cat([pad(p.log_pb, 0.0, 1) for p in parts]),
                            torch.cat([p.length for p in parts]), torch.cat([p.beta for p in parts]),
                            torch.cat([pad(bwd(p), -1, 0) for p in parts], 1) if with_bwd else None)


@dataclass
class StepTerms:
    """The model's terms at a batch of ``N`` states, from one model pass, on the model's device.

    Attributes:
        actions: long ``[N, 3]``, the forward action taken at each state (given or drawn).
        log_pf: ``[N]``, :math:`\\log P_F(a \\mid s, \\beta)` of those actions.
        log_pb: ``[K]``, learned :math:`\\log P_B(s_{prev} \\mid s, \\beta)` at the ``K`` states
            given backward actions, or ``None`` (none given).
        log_flow: ``[N]``, :math:`\\log F(s, \\beta)`, or ``None`` (no state-flow head).
    """

    actions: Tensor
    log_pf: Tensor
    log_pb: Tensor | None
    log_flow: Tensor | None


def step_terms(gfn: TemperatureGFlowNet, env, states, beta: Tensor, actions: Tensor | None = None,
               undo: Tensor | None = None, reached: Tensor | None = None, epsilon: float = 0.0,
               generator: torch.Generator | None = None, check: bool = True) -> StepTerms:
    """The model's terms at ``N`` states from one model pass: every term the sampler and
    :func:`evaluate_trajectories` read is computed here.

    Args:
        gfn: the model.
        env: the environment.
        states: ``N`` states.
        beta: ``[N]`` inverse temperatures (any device).
        actions: long ``[N, 3]``, the forward action taken at each state, or ``None``: drawn
            from the policy with ``epsilon`` and ``generator`` (:meth:`GraphActionCategorical.sample`).
        undo: long ``[K, 3]``, the backward action back to the previous state at each state
            ``reached`` (``undo_actions`` of the previous step). Given, the backward masks are
            built and the learned backward policy read (the model must have one).
        reached: long ``[K]``, the rows of ``states`` that ``undo`` belongs to (default: all).
        check: check that given actions are in range and legal (``False`` for actions drawn
            from the same masks).
    """
    dev = model_device(gfn)
    data, fmasks, bmasks = model_inputs(env, states, dev, backward=undo is not None)
    out = gfn.evaluate(data, beta.to(dev), fmasks, bmasks)
    actions = out.forward.sample(epsilon, generator) if actions is None else actions.to(dev)
    log_pf = out.forward.log_prob(actions, check=check)
    log_pb = None
    if undo is not None:
        log_pb = out.backward.log_prob(undo.to(dev), None if reached is None else reached.to(dev), check=check)
    return StepTerms(actions, log_pf, log_pb, out.log_flow)


@dataclass
class TrajectoryTerms:
    """The model's terms along ``B`` trajectories of at most ``T`` actions, on the model's
    device, with gradients (unless computed under ``torch.no_grad()``).

    Attributes:
        log_pf: ``[B, T]``, forward log-probabilities at the evaluation beta (0 after the stop).
        log_pb: ``[B, T]``, backward log-probabilities :math:`\\log P_B(s_t \\mid s_{t+1})`,
            learned or uniform (0 for the stop and after).
        log_flow: ``[B, T + 1]``, state flows :math:`\\log F(s_t, \\beta)` (0 after the stop;
            the loss sets column 0 and the terminal's), or ``None`` (no state-flow head).
    """

    log_pf: Tensor
    log_pb: Tensor
    log_flow: Tensor | None

    @staticmethod
    def from_steps(steps: list[StepTerms], ii: Tensor, tt: Tensor, shape: tuple[int, int],
                   log_pb: Tensor | None = None) -> "TrajectoryTerms":
        """Lay out the terms of ``steps`` (concatenated: ``N`` states, those of trajectory
        ``ii [N]`` at time ``tt [N]``) on ``[B, T] = shape`` grids. ``log_pb``: ``[B, T]``
        recorded (uniform) backward log-probabilities, or ``None``: the steps' learned ones,
        one for each state with ``tt >= 1`` in order, each going to column ``tt - 1``."""
        B, T = shape
        pf = _cat([s.log_pf for s in steps])
        ii, tt = ii.to(pf.device), tt.to(pf.device)
        log_pf = pf.new_zeros(B, T).index_put((ii, tt), pf)
        if log_pb is None:
            child = (tt >= 1).nonzero().flatten()
            pb = _cat([s.log_pb for s in steps if s.log_pb is not None] or [pf.new_zeros(0)])
            log_pb = pf.new_zeros(B, T).index_put((ii[child], tt[child] - 1), pb)
        log_flow = None
        if steps[0].log_flow is not None:
            flow = _cat([s.log_flow for s in steps])
            log_flow = flow.new_zeros(B, T + 1).index_put((ii, tt), flow)
        return TrajectoryTerms(log_pf, log_pb.to(pf.device), log_flow)


def sample_trajectories(gfn: TemperatureGFlowNet, env, beta: Tensor, epsilon: float = 0.0,
                        generator: torch.Generator | None = None) -> Trajectories:
    """Roll out ``B = len(beta)`` trajectories from the empty state until each stops.

    Every step acts on all unfinished trajectories at once: one graph batch, one model pass,
    one batched environment step. The model may sit on any device; states, actions and the
    recorded (detached) log-probabilities stay on the CPU. For the model's terms *with*
    gradients, use :func:`sample_and_evaluate`.

    Args:
        gfn: the model.
        env: the environment.
        beta: ``[B]`` inverse temperatures (finite, > 0).
        epsilon: probability of a uniformly random legal action at each step (exploration).
        generator: random source, for reproducible samples (a CPU generator serves any device).
    """
    with torch.no_grad():
        return _rollout(gfn, env, beta, epsilon, generator, evaluate=False)[0]


def sample_and_evaluate(gfn: TemperatureGFlowNet, env, beta: Tensor, epsilon: float = 0.0,
                        generator: torch.Generator | None = None) -> tuple[Trajectories, TrajectoryTerms]:
    """:func:`sample_trajectories`, also returning the model's terms along the trajectories
    (with gradients unless under ``torch.no_grad()``) from the passes that sampled them.

    The :class:`TrajectoryTerms` equal ``evaluate_trajectories(gfn, env, traj)`` (up to float
    rounding) at the sampling beta, without a second pass over the states: on-policy training
    back-propagates through the sampling passes. A learned backward policy is read at each
    state reached (its masks built there), state flows at every state visited.
    """
    return _rollout(gfn, env, beta, epsilon, generator, evaluate=True)


def _rollout(gfn: TemperatureGFlowNet, env, beta: Tensor, epsilon: float, generator: torch.Generator | None,
             evaluate: bool) -> tuple[Trajectories, TrajectoryTerms | None]:
    beta = check_beta(beta)
    B, dev = beta.shape[0], model_device(gfn)
    learned = evaluate and gfn.backward_policy is not None
    if learned and not env.has_backward_actions:
        raise ValueError(f"a learned backward policy needs {type(env).__name__}.backward_actions(states, actions)")
    s = env.initial(B)
    done = torch.zeros(B, dtype=torch.bool)
    length = torch.zeros(B, dtype=torch.long)
    beta_dev = beta.to(dev)
    states = [s]
    in_flight, terms, taken, uniform = [], [], [], []  # per step: trajectories, StepTerms, actions, uniform P_B
    undo = None  # [B, 3]: the backward action undoing each trajectory's last action (learned P_B, after step 0)
    for t in range(env.max_steps):
        idx = (~done).nonzero().flatten()
        if idx.numel() == 0:
            break
        sub = s[idx]
        # P_B(s_{t-1} | s_t) is read at s_t: every state in flight after step 0 was reached by a non-stop action
        step = step_terms(gfn, env, sub, beta_dev[idx.to(dev)], undo=None if undo is None else undo[idx],
                          epsilon=epsilon, generator=generator, check=False)  # drawn from the masks, so legal
        a = step.actions.cpu()
        nxt = env.step(sub, a, check=False)
        stop = env.is_stop(a)
        if learned:
            undo = torch.full((B, 3), -1, dtype=torch.long).index_put((idx,), undo_actions(env, sub, a))
        in_flight.append(idx)
        terms.append(step)
        taken.append(a)
        uniform.append(torch.where(stop, torch.zeros(()), uniform_backward_log_prob(env, nxt)))
        length[idx] += 1
        s = s.clone()
        s.put(idx, nxt)
        states.append(s)
        done[idx[stop]] = True
    T = len(in_flight)
    ii, tt = _time_major(in_flight)
    pf = _cat([x.log_pf.detach() for x in terms]).cpu()
    traj = Trajectories(states, torch.full((T, B, 3), -1, dtype=torch.long).index_put((tt, ii), _cat(taken)),
                        torch.zeros(B, T, dtype=pf.dtype).index_put((ii, tt), pf),
                        torch.zeros(B, T).index_put((ii, tt), _cat(uniform)), length, beta)
    if not evaluate:
        return traj, None
    return traj, TrajectoryTerms.from_steps(terms, ii, tt, (B, T), None if learned else traj.log_pb)


def evaluate_trajectories(gfn: TemperatureGFlowNet, env, traj: Trajectories,
                          beta: Tensor | None = None) -> TrajectoryTerms:
    """The model's terms along stored trajectories, from one batched pass over every visited state.

    Trajectories may have been sampled at other betas (exploration) or come from data; the
    result is at ``beta`` (``[B]``, default ``traj.beta``). With a learned backward policy,
    ``log P_B(s_t | s_{t+1})`` is read at ``s_{t+1}``, a state of the same pass, for the backward
    action ``traj.backward_actions`` holds (else ``env.backward_actions``).
    """
    beta = traj.beta if beta is None else check_beta(beta)
    B, T = traj.log_pf.shape
    learned = gfn.backward_policy is not None
    if learned and traj.backward_actions is None and not env.has_backward_actions:
        raise ValueError(f"a learned backward policy needs {type(env).__name__}.backward_actions(states, actions)")
    idx = [(traj.length > t).nonzero().flatten() for t in range(T)]
    ii, tt = _time_major(idx)
    states = type(traj.states[0]).cat([traj.states[t][i] for t, i in enumerate(idx)])
    actions = torch.cat([traj.actions[t, i] for t, i in enumerate(idx)])
    undo = reached = None
    if learned:  # state (i, t >= 1) was reached by a non-stop action from row (i, t - 1)
        row = torch.full((T, B), -1, dtype=torch.long)
        row[tt, ii] = torch.arange(ii.shape[0])
        reached = (tt >= 1).nonzero().flatten()
        parent = row[tt[reached] - 1, ii[reached]]
        if traj.backward_actions is not None:
            undo = traj.backward_actions[tt[parent], ii[parent]]
        else:
            undo = env.backward_actions(states[parent], actions[parent])
    step = step_terms(gfn, env, states, beta[ii], actions, undo, reached)
    return TrajectoryTerms.from_steps([step], ii, tt, (B, T), None if learned else traj.log_pb)


def undo_actions(env, states, actions: Tensor) -> Tensor:
    """The backward action, in the next state's numbering, that undoes each forward action
    ``actions [N, 3]`` taken at ``states``: long ``[N, 3]``, ``-1`` for a stop or padding (``-1``)
    action. Needs ``env.has_backward_actions``."""
    out = torch.full_like(actions, -1)
    i = ((actions[:, 0] >= 0) & ~env.is_stop(actions.clamp_min(0))).nonzero().flatten()
    if i.numel():
        out[i] = env.backward_actions(states[i], actions[i])
    return out


def _time_major(idx: list[Tensor]) -> tuple[Tensor, Tensor]:
    """The rows ``idx[t]`` (trajectories evaluated at time ``t``) as ``(trajectory [N], time [N])``."""
    return torch.cat(idx), torch.cat([torch.full_like(i, t) for t, i in enumerate(idx)])


def _cat(parts: list[Tensor]) -> Tensor:
    """``torch.cat`` that returns a single part as is (no copy)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def model_inputs(env, states, device: torch.device, backward: bool = False):
    """What the model reads at ``states``, on ``device``: the graph batch, the forward masks
    and (with ``backward``) the backward masks, else ``None``."""
    data = to_device(env.to_graph(states), device)
    fwd = [m.to(device) for m in env.forward_masks(states)]
    return data, fwd, [m.to(device) for m in env.backward_masks(states)] if backward else None


def model_device(gfn: torch.nn.Module) -> torch.device:
    """The device of a model's parameters (the CPU for a model without any)."""
    p = next(gfn.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def to_device(data, device: torch.device):
    """A PyG batch on ``device`` (itself when already there: the CPU path pays nothing)."""
    return data if device.type == "cpu" else data.to(device)


def uniform_backward_actions(env, states, generator: torch.Generator | None = None) -> Tensor:
    """One uniformly random legal backward action per state, ``[B, 3]``; every state must have a
    parent (``env.num_parents(states) > 0``)."""
    masks = env.backward_masks(states)
    data = env.to_graph(states)
    batches = [element_batch(data, t.level) for t in env.backward_action_types]
    cat = GraphActionCategorical([torch.zeros(m.shape) for m in masks], masks, batches, data.num_graphs)
    return cat.sample(0.0, generator)


def sample_backward_trajectories(env, terminal, beta: Tensor, generator: torch.Generator | None = None) -> Trajectories:
    """Trajectories that end in given terminal states, drawn backwards with the uniform
    backward policy: for offline data, replay buffers and importance-sampled likelihoods.

    Each trajectory removes uniformly random legal parents from ``terminal[i]`` down to the
    initial state and is returned in forward order, ending with the stop action. Each action
    is legal at the state before it, and the state after it is that result up to a numbering
    of nodes; ``backward_actions`` holds the removals in the numbering of the later state.
    ``log_pf`` is zero (the model has not been evaluated: :func:`evaluate_trajectories` does that) and
    ``log_pb`` holds the uniform backward log-probabilities.

    Args:
        env: an environment with ``backward_masks``, ``backward_step`` and ``num_parents``.
        terminal: ``B`` states.
        beta: ``[B]`` inverse temperatures, stored in the result.
        generator: random source.
    """
    beta = check_beta(beta)
    B = len(terminal)
    if beta.shape[0] != B:
        raise ValueError(f"beta has {beta.shape[0]} entries for {B} terminal states")
    back = [terminal]  # back[k]: every state after k backward steps (finished ones stay put)
    fwd, bwd = [], []  # [k]: the forward / backward action between back[k + 1] and back[k]
    steps = torch.zeros(B, dtype=torch.long)
    s = terminal
    for _ in range(env.max_steps):
        idx = (env.num_parents(s) > 0).nonzero().flatten()
        if idx.numel() == 0:
            break
        sub = s[idx]
        b = uniform_backward_actions(env, sub, generator)
        parent, a = env.backward_step(sub, b)
        s = s.clone()
        s.put(idx, parent)
        back.append(s)
        fwd.append(torch.zeros(B, 3, dtype=torch.long).index_put((idx,), a))
        bwd.append(torch.zeros(B, 3, dtype=torch.long).index_put((idx,), b))
        steps[idx] += 1
    else:
        if bool((env.num_parents(s) > 0).any()):
            raise RuntimeError(f"backward walks did not reach the initial state in {env.max_steps} steps")
    T = int(steps.max()) + 1
    ar = torch.arange(B)
    allstates = type(terminal).cat(back)
    allfwd = torch.stack(fwd + [torch.zeros(B, 3, dtype=torch.long)])
    allbwd = torch.stack(bwd + [torch.zeros(B, 3, dtype=torch.long)])
    states, actions, bactions, log_pb = [], [], [], []
    for t in range(T + 1):
        k = (steps - t).clamp_min(0)  # forward time t is backward step (steps - t); then the terminal
        states.append(allstates[k * B + ar])
    for t in range(T):
        moving = t < steps
        k = (steps - 1 - t).clamp_min(0)
        a = torch.where(moving[:, None], allfwd[k, ar], env.stop_actions(B))
        a[t > steps] = -1
        actions.append(a)
        bactions.append(torch.where(moving[:, None], allbwd[k, ar], torch.full((B, 3), -1, dtype=torch.long)))
        log_pb.append(torch.where(moving, uniform_backward_log_prob(env, states[t + 1]), torch.zeros(())))
    return Trajectories(states, torch.stack(actions), torch.zeros(B, T), torch.stack(log_pb, 1), steps + 1, beta,
                        backward_actions=torch.stack(bactions))


def uniform_sampler(env):
    """``draw(n, generator=None)``: ``n`` terminal states of ``env`` drawn by the uniformly random
    policy (every legal action equally likely at each step), without gradients. The draws depend
    on ``generator`` alone: no network output is used."""
    # epsilon = 1 explores at every step, so this tiny model's logits are never read
    model = TemperatureGFlowNet.build(env, ModelConfig(hidden=8, num_layers=1, heads=1, conditioning="none"))

    def draw(n: int, generator: torch.Generator | None = None):
        with torch.no_grad():
            return sample_trajectories(model, env, torch.ones(n), 1.0, generator).terminal

    return draw
