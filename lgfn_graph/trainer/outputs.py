"""The records a run writes as it goes, in its output folder (rank 0 only): ``metrics.jsonl``
(one line per step), ``samples.db`` (every sampled molecule, :class:`~lgfn_graph.sampledb.SampleDB`)
and TensorBoard logs in ``tb/``; and cutting them back to a step, so that a resume or a rerun
after a crash writes each step once."""
from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

from .. import distributed as D
from ..files import atomic_write
from ..sampledb import SampleDB
from .batches import Collected


class RunOutputs:
    """The open records of one training session, a context manager (closing each file even when
    closing another fails, e.g. on a full disk).

    Every rank enters it and calls :meth:`record` after every step (the sampled molecules of
    every rank are gathered to rank 0, a collective); only a rank given a folder writes.

    Args:
        out_dir: the run folder, or ``None``: write nothing (other ranks, or no folder).
        start_step: the step training starts from (TensorBoard drops its events after it).
        sample_db: write ``samples.db``.
        tensorboard: write TensorBoard logs into ``tb/``.
        gather_samples: gather each step's sampled molecules (SMILES, reward, beta) to rank 0
            for ``samples.db``; the same on every rank.
    """

    def __init__(self, out_dir: Path | None, start_step: int, sample_db: bool, tensorboard: bool,
                 gather_samples: bool):
        self.out_dir, self.start_step = out_dir, start_step
        self.sample_db, self.tensorboard, self.gather_samples = sample_db, tensorboard, gather_samples
        self.log = self.db = self.tb = None
        self._files = ExitStack()

    def __enter__(self) -> "RunOutputs":
        out = self.out_dir
        if out is None:
            return self
        with self._files as files:
            self.log = files.enter_context(open(out / "metrics.jsonl", "a"))
            if self.sample_db:
                self.db = files.enter_context(SampleDB(out / "samples.db"))
            if self.tensorboard:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(out / "tb"), purge_step=self.start_step + 1)
                files.callback(self.tb.close)
            self._files = files.pop_all()  # opened: keep them open until __exit__
        return self

    def record(self, batch: Collected, metrics: dict) -> None:
        """Write one step: its ``metrics`` (plain numbers, with ``"step"``) and the batch's
        sampled molecules (its first ``num_sampled``: SMILES, reward, beta)."""
        rows = None
        if self.gather_samples and batch.num_sampled:
            n = batch.num_sampled
            mine = (batch.smiles, batch.log_reward[:n].exp().tolist(), batch.beta[:n].tolist())
            rows = D.gather(mine)  # every rank's samples reach rank 0
        if self.log is None:
            return
        self.log.write(json.dumps(metrics) + "\n")
        self.log.flush()
        if rows is not None:
            for rank, (smiles, reward, beta) in enumerate(rows):
                self.db.add(metrics["step"], smiles, reward, beta, [s is not None for s in smiles], rank)
        if self.tb is not None:
            for k, v in metrics.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}", v, metrics["step"])

    def __exit__(self, *exc) -> None:
        self._files.close()


def truncate_records(out_dir: Path, step: int) -> None:
    """Drop the records in ``out_dir`` of the steps after ``step``, which training redoes, and
    a metrics line cut off by a kill."""
    truncate_metrics(out_dir / "metrics.jsonl", step)
    if (out_dir / "samples.db").exists():
        with SampleDB(out_dir / "samples.db") as db:
            db.truncate_after(step)


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the lines of ``metrics.jsonl`` up to ``step`` (and drop a line cut off by a kill)."""
    if not path.exists():
        return
    text = path.read_text()
    keep = []
    for line in text.splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    kept = "".join(k + "\n" for k in keep)  # a last line without its newline gets one: never glued to the next
    if kept != text:
        with atomic_write(path) as f:
            f.write(kept)


__all__ = ["RunOutputs", "truncate_metrics", "truncate_records"]
