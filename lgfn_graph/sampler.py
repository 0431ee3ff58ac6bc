"""Batched trajectory sampling: every step acts on all unfinished trajectories at once."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .betas import check_beta
from .categorical import GraphActionCategorical
from .nn.heads import element_batch
from .policy import TemperatureGFlowNet, uniform_backward_log_prob


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
        ``backward_actions`` (no learned backward policy possible) drops them instead."""
        T = max(p.actions.shape[0] for p in parts)
        # only a learned backward policy reads them, and it needs an env that can fill them in
        with_bwd = any(p.backward_actions is not None for p in parts) and (
            all(p.backward_actions is not None for p in parts) or hasattr(env, "backward_actions"))

        def pad(x: Tensor, value, dim: int) -> Tensor:
            shape = list(x.shape)
            shape[dim] = T - x.shape[dim]
            return torch.cat([x, torch.full(shape, value, dtype=x.dtype)], dim)

        def bwd(p: "Trajectories") -> Tensor:
            if p.backward_actions is not None:
                return p.backward_actions
            if env is None:
                raise ValueError("Trajectories.cat needs env to fill in backward actions")
            out = torch.full_like(p.actions, -1)
            for t in range(p.actions.shape[0]):
                i = ((p.actions[t, :, 0] >= 0) & ~env.is_stop(p.actions[t].clamp_min(0))).nonzero().flatten()
                if i.numel():
                    out[t, i] = env.backward_actions(p.states[t][i], p.actions[t, i])
            return out

        states = [type(parts[0].states[0]).cat([p.states[min(t, len(p.states) - 1)] for p in parts])
                  for t in range(T + 1)]
        return Trajectories(states, torch.cat([pad(p.actions, -1, 0) for p in parts], 1),
                            torch.cat([pad(p.log_pf, 0.0, 1) for p in parts]),
                            torch.cat([pad(p.log_pb, 0.0, 1) for p in parts]),
                            torch.cat([p.length for p in parts]), torch.cat([p.beta for p in parts]),
                            torch.cat([pad(bwd(p), -1, 0) for p in parts], 1) if with_bwd else None)


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
                        generator: torch.Generator | None = None) -> tuple[Trajectories, "Replay"]:
    """:func:`sample_trajectories`, also returning the model's terms along the trajectories
    (with gradients unless under ``torch.no_grad()``) from the passes that sampled them.

    The :class:`Replay` equals ``replay(gfn, env, traj)`` (up to float rounding) at the
    sampling beta, without a second pass over the states: on-policy training back-propagates
    through the sampling passes. A learned backward policy is read at each state reached (its
    masks built there), state flows at every state visited.
    """
    return _rollout(gfn, env, beta, epsilon, generator, evaluate=True)


def _rollout(gfn: TemperatureGFlowNet, env, beta: Tensor, epsilon: float, generator: torch.Generator | None,
             evaluate: bool) -> tuple[Trajectories, "Replay | None"]:
    beta = check_beta(beta)
    B, dev = beta.shape[0], model_device(gfn)
    learned = evaluate and gfn.backward_policy is not None
    if learned and not hasattr(env, "backward_actions"):
        raise ValueError(f"a learned backward policy needs {type(env).__name__}.backward_actions(states, actions)")
    flows = evaluate and gfn.state_flow is not None
    s = env.initial(B)
    done = torch.zeros(B, dtype=torch.bool)
    states, actions, log_pf, log_pb = [s], [], [], []
    rep_pf, rep_pb, rep_flow = [], [], []  # per step, on the model's device, with gradients
    undo = None  # [B, 3]: the backward action undoing each trajectory's last action (learned P_B)
    length = torch.zeros(B, dtype=torch.long)
    beta_dev = beta.to(dev)
    for t in range(env.max_steps):
        idx = (~done).nonzero().flatten()
        if idx.numel() == 0:
            break
        sub = s[idx]
        idx_dev = idx.to(dev)
        data, masks, bmasks = model_inputs(env, sub, dev, backward=learned and t > 0)
        out = gfn.evaluate(data, beta_dev[idx_dev], masks, bmasks)
        a_dev = out.forward.sample(epsilon, generator)
        lp = out.forward.log_prob(a_dev, check=False)  # drawn from the masks, so legal
        a = a_dev.cpu()
        nxt = env.step(sub, a, check=False)
        stop = env.is_stop(a)
        pb = torch.where(stop, torch.zeros(()), uniform_backward_log_prob(env, nxt))
        step_a = torch.full((B, 3), -1, dtype=torch.long)
        step_a[idx] = a
        actions.append(step_a)
        log_pf.append(torch.zeros(B, dtype=lp.dtype).index_put((idx,), lp.detach().cpu()))
        log_pb.append(torch.zeros(B).index_put((idx,), pb))
        if evaluate:
            rep_pf.append(lp.new_zeros(B).index_put((idx_dev,), lp))
            if flows:
                rep_flow.append(out.log_flow.new_zeros(B).index_put((idx_dev,), out.log_flow))
            if learned and t > 0:  # P_B(s_{t-1} | s_t): every state in flight was reached by a non-stop action
                b_lp = out.backward.log_prob(undo[idx].to(dev), check=False)
                rep_pb.append(b_lp.new_zeros(B).index_put((idx_dev,), b_lp))
            if learned:
                undo = torch.full((B, 3), -1, dtype=torch.long)
                go = ~stop
                if bool(go.any()):
                    undo[idx[go]] = env.backward_actions(sub[go.nonzero().flatten()], a[go])
        length[idx] += 1
        s = s.clone()
        s.put(idx, nxt)
        states.append(s)
        done[idx[stop]] = True
    traj = Trajectories(states, torch.stack(actions), torch.stack(log_pf, 1), torch.stack(log_pb, 1), length, beta)
    if not evaluate:
        return traj, None
    if learned:  # the last action of every trajectory is its stop, whose P_B is 0
        rep_pb.append(rep_pf[0].new_zeros(B))
        pb_dev = torch.stack(rep_pb, 1)
    else:
        pb_dev = traj.log_pb.to(dev)
    log_flow = None
    if flows:  # column T (the terminal) is the loss's, as in :func:`replay`
        log_flow = torch.cat([torch.stack(rep_flow, 1), rep_flow[0].new_zeros(B, 1)], 1)
    return traj, Replay(torch.stack(rep_pf, 1), pb_dev, log_flow)


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
    ``log_pf`` is zero (the model has not been evaluated: :func:`replay` does that) and
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
        a = torch.where(moving[:, None], allfwd[k, ar], torch.zeros(B, 3, dtype=torch.long))  # stop: (0, 0, 0)
        a[t > steps] = -1
        actions.append(a)
        bactions.append(torch.where(moving[:, None], allbwd[k, ar], torch.full((B, 3), -1, dtype=torch.long)))
        log_pb.append(torch.where(moving, uniform_backward_log_prob(env, states[t + 1]), torch.zeros(())))
    return Trajectories(states, torch.stack(actions), torch.zeros(B, T), torch.stack(log_pb, 1), steps + 1, beta,
                        backward_actions=torch.stack(bactions))


@dataclass
class Replay:
    """The model's terms along stored trajectories, with gradients.

    Attributes:
        log_pf: ``[B, T]``, forward log-probabilities at the replay beta.
        log_pb: ``[B, T]``, backward log-probabilities (learned or uniform; 0 for the stop).
        log_flow: ``[B, T + 1]``, state flows :math:`\\log F(s_t, \\beta)` (0 where no state was
            evaluated: column 0 and the terminal column belong to the loss), or ``None``.
    """

    log_pf: Tensor
    log_pb: Tensor
    log_flow: Tensor | None


def replay(gfn: TemperatureGFlowNet, env, traj: Trajectories, beta: Tensor | None = None) -> Replay:
    """Evaluate the model on every visited state of ``traj`` in one batched pass.

    Trajectories may have been sampled at other betas (exploration) or come from data; the
    result is at ``beta`` (``[B]``, default ``traj.beta``). With a learned backward policy,
    ``log P_B(s_t | s_{t+1})`` is read at ``s_{t+1}``, a state of the same pass.
    """
    beta = traj.beta if beta is None else check_beta(beta)
    B, T = traj.log_pf.shape
    dev = model_device(gfn)
    idx = [(traj.length > t).nonzero().flatten() for t in range(T)]
    tt = torch.cat([torch.full_like(i, t) for t, i in enumerate(idx)])
    ii = torch.cat(idx)
    states = type(traj.states[0]).cat([traj.states[t][i] for t, i in enumerate(idx)])
    actions = torch.cat([traj.actions[t, i] for t, i in enumerate(idx)])
    learned = gfn.backward_policy is not None
    if learned and traj.backward_actions is None and not hasattr(env, "backward_actions"):
        raise ValueError(f"a learned backward policy needs {type(env).__name__}.backward_actions(states, actions)")
    data, fmasks, bmasks = model_inputs(env, states, dev, backward=learned)
    out = gfn.evaluate(data, beta[ii].to(dev), fmasks, bmasks)
    ii, tt = ii.to(dev), tt.to(dev)
    log_pf = torch.zeros(B, T, dtype=out.forward.dtype, device=dev).index_put(
        (ii, tt), out.forward.log_prob(actions.to(dev)))
    if learned:
        row = torch.full((T, B), -1, dtype=torch.long, device=dev)
        row[tt, ii] = torch.arange(ii.shape[0], device=dev)
        child = (tt >= 1).nonzero().flatten()  # rows reached by a non-stop action
        parent = row[tt[child] - 1, ii[child]]
        if traj.backward_actions is not None:
            bwd = traj.backward_actions.to(dev)[tt[parent], ii[parent]]
        else:
            cpu_parent = parent.cpu()
            bwd = env.backward_actions(states[cpu_parent], actions[cpu_parent]).to(dev)
        log_pb = torch.zeros_like(log_pf).index_put((ii[child], tt[child] - 1), out.backward.log_prob(bwd, child))
    else:
        log_pb = traj.log_pb.to(dev)
    log_flow = None
    if out.log_flow is not None:
        log_flow = torch.zeros(B, T + 1, dtype=out.log_flow.dtype, device=dev).index_put((ii, tt), out.log_flow)
    return Replay(log_pf, log_pb, log_flow)
