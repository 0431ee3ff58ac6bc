"""Training with trajectory, detailed or sub-trajectory balance: online, from a replay buffer,
or offline from a fixed dataset; resumable exactly, and data-parallel under ``torchrun``.

One concern a module:

* :mod:`.config`: :class:`TrainConfig`, the settings;
* :mod:`.loop`: :class:`Trainer`, the loop (collect a batch, update, record, checkpoint);
* :mod:`.batches`: where a batch comes from: on-policy or explore-beta sampling, a replay
  buffer, an offline dataset, each a small class the loop composes;
* :mod:`.objectives`: the balance objectives, by name from a registry, and :class:`Objective`;
* :mod:`.outputs`: ``metrics.jsonl``, ``samples.db`` and TensorBoard logs;
* :mod:`.checkpoints`: the training state a resume needs;
* :mod:`.randomness`: the stream the model's layers draw from while training (no global RNG
  is changed);
* :mod:`.signals`: stopping cleanly on SIGINT, SIGTERM or SIGHUP.
"""
from .batches import Collected
from .config import TrainConfig
from .loop import Callback, Trainer
from .objectives import Objective
from .signals import STOP_SIGNALS, TrainingInterrupted

__all__ = ["Callback", "Collected", "Objective", "STOP_SIGNALS", "TrainConfig", "Trainer", "TrainingInterrupted"]
