"""One run's lifecycle for every method: plan, write (locked, resumed or restarted), log, checkpoint, finish.

    run = Run.plan("patchcore", config, data, {"backbone": identity}, runs_dir="runs")
    if not run.is_finished:
        with run.writing(force=force):           # lock, config.json, data.json, old results dropped
            run_maps = ...                          # the method's work
            run.finish(run_maps, profile=..., device=..., seed=..., timings={...}, **facts)

The record (what the run id hashes) and the weights identities are computed once, in :meth:`Run.plan`. The one
resume rule is :meth:`Run.resolve_resume`. Nothing else writes into a run directory: methods go through
:meth:`Run.writing`, :meth:`Run.log_steps`, :meth:`Run.save_checkpoint`, :meth:`Run.write_json` and
:meth:`Run.finish`. File layout: :mod:`stlm_core.runs.layout`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from stlm_core.errors import StlmError
from stlm_core.fileio import atomic_torch_save, atomic_write_json, atomic_write_text, ensure_writable, read_json
from stlm_core.runs.layout import (CHECKPOINT_FILE, CONFIG_FILE, LOSSES_FILE, begin_run, config_id, is_finished,
                                   mark_finished, read_config, run_dir_for, run_record, write_metrics)
from stlm_core.runs.lock import run_lock
from stlm_core.runs.maps import RunMaps, save_maps, score_maps
from stlm_core.runs.provenance import make_provenance

Resume = bool | Literal["auto"]


@dataclass
class Run:
    """One method on one category with one configuration, and its directory.

    ``record``: what ``config.json`` stores and the run id hashes; ``weights``: the weights identities in it
    (``name -> "random-init" | "<name>@<sha256>"``); ``data``: the :class:`~stlm_core.data.spec.DataSpec` it reads;
    ``locations``: extra entries of ``data.json`` (e.g. the texture folder); ``resources``: what the method
    resolved while planning and needs to run (e.g. weights files; not recorded). ``resumed`` is set by
    :meth:`writing`: True when the run continues from its checkpoint.
    """

    record: dict
    run_dir: Path
    data: Any
    locations: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    resumed: bool = False

    # ----------------------------------------------------------------------------------------------- planning

    @classmethod
    def plan(cls, method: str, config: Any, data: Any, weights: Mapping[str, str], *,
             runs_dir: str | os.PathLike | None = None, run_dir: str | os.PathLike | None = None,
             splits: tuple[str, ...] = ("train", "test"), locations: Mapping[str, Any] | None = None,
             resources: Mapping[str, Any] | None = None, **extra: Any) -> "Run":
        """The run of ``method`` with ``config`` (``to_dict()``) on ``data`` (its ``identity(splits)``) and
        ``weights`` identities; ``extra`` entries join the record. Its directory is ``run_dir`` when given, else
        ``runs_dir/<method>/<dataset>/<category>/<run-id>``."""
        record = run_record(method, config, data.identity(splits), weights, **extra)
        if run_dir is None:
            run_dir = run_dir_for(runs_dir if runs_dir is not None else "runs", record)
        return cls(record=record, run_dir=Path(run_dir), data=data, locations=dict(locations or {}),
                   resources=dict(resources or {}))

    @classmethod
    def open(cls, run_dir: str | os.PathLike, data: Any, locations: Mapping[str, Any] | None = None) -> "Run":
        """An existing run directory with its recorded ``config.json`` (e.g. to evaluate it again)."""
        run_dir = Path(run_dir)
        return cls(record=read_config(run_dir), run_dir=run_dir, data=data, locations=dict(locations or {}))

    @property
    def id(self) -> str:
        return config_id(self.record)

    @property
    def weights(self) -> dict[str, str]:
        return dict(self.record["weights"])

    @property
    def is_finished(self) -> bool:
        return is_finished(self.run_dir)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOSSES_FILE

    # ------------------------------------------------------------------------------------------------ writing

    def resolve_resume(self, resume: Resume = "auto", *, force: bool = False) -> bool:
        """The one rule for continuing a run: True = continue from its checkpoint, False = start from zero.

        - ``"auto"``: continue when a checkpoint exists (a killed notebook, workflow job or study run picks up
          where it stopped), else start;
        - ``True``: continue; a run that was set up but saved no epoch yet starts from the beginning (nothing is
          lost); no run at all is an error;
        - ``False``: start; an existing checkpoint is an error unless ``force`` (which discards it).
        """
        has_checkpoint = self.checkpoint_path.is_file()
        if resume == "auto":
            return has_checkpoint and not force
        if resume:
            if has_checkpoint:
                return True
            if (self.run_dir / CONFIG_FILE).is_file():
                print(f"note: {self.run_dir} has no saved epoch yet; training starts from the beginning.",
                      file=sys.stderr)
                return False
            raise StlmError(f"--resume: no checkpoint at {self.checkpoint_path}; start the run without --resume.")
        if has_checkpoint and not force:
            raise StlmError(f"{self.run_dir} already holds a checkpoint; pass --resume to continue it or --force to "
                            "restart.")
        return False

    @contextlib.contextmanager
    def writing(self, resume: Resume = False, *, force: bool = False) -> Iterator["Run"]:
        """Hold the run's lock while writing it: check/write ``config.json`` (a different configuration in the same
        directory is refused unless ``force``), record where the data is read from, drop old results (a
        rewritten run never looks finished) and, when the run starts from zero, its checkpoint and loss log.
        ``resume`` as in :meth:`resolve_resume`; :attr:`resumed` tells the caller which way it went."""
        self.resumed = self.resolve_resume(resume, force=force)
        ensure_writable(self.run_dir)
        if self.resumed:
            print(f"resuming {self.run_dir} from its checkpoint", flush=True)
        with run_lock(self.run_dir):
            begin_run(self.run_dir, self.record, self.data, force=force and not self.resumed, **self.locations)
            if not self.resumed:
                for stale in (self.checkpoint_path, self.log_path):
                    stale.unlink(missing_ok=True)
            yield self

    def log_steps(self, rows: list[Mapping[str, Any]]) -> None:
        """Append one JSON line per optimisation step to ``losses.jsonl``."""
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(dict(row)) + "\n" for row in rows))

    def truncate_log(self, last_step: int) -> None:
        """Drop log lines written after the checkpoint (by a killed epoch)."""
        if not self.log_path.exists():
            return
        keep = [line for line in self.log_path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= last_step]
        atomic_write_text(self.log_path, "".join(line + "\n" for line in keep))

    def save_checkpoint(self, state: Mapping[str, Any], format_version: int) -> Path:
        """Replace ``checkpoint.pt`` atomically with ``state`` (plus its format version and this run's record)."""
        return atomic_torch_save({"format": format_version, "record": self.record, **state}, self.checkpoint_path)

    def write_json(self, name: str, content: Any) -> Path:
        """A method's own JSON file in the run directory (e.g. a learning curve), written atomically."""
        return atomic_write_json(self.run_dir / name, content)

    def read_json(self, name: str) -> Any | None:
        """A JSON file of the run directory, or ``None`` when there is none."""
        path = self.run_dir / name
        return read_json(path) if path.is_file() else None

    def finish(self, run_maps: RunMaps, *, profile: str | None, device: str | None, seed: int | None,
               weights: Mapping[str, str] | None = None, timings: Mapping[str, float] | None = None,
               save: bool = True, **facts: Any) -> Path:
        """Score every map of ``run_maps`` with the same rule, write the provenance (``weights`` default: the
        record's; ``facts`` join it), the maps (``save``), ``metrics.json`` and, last, ``finished.json``."""
        data = self.data
        dataset = {"name": data.dataset, "category": data.category, "files": len(run_maps.labels),
                   "root": str(data.root), "synthetic": data.dataset == "synthetic"}
        provenance = make_provenance(profile=profile, device=device, weights=dict(weights or self.weights),
                                     dataset=dataset, seed=seed, timings=timings, method=self.record["method"],
                                     **facts)
        if save:
            save_maps(self.run_dir, run_maps)
        write_metrics(self.run_dir, score_maps(run_maps), run_maps.primary, provenance)
        return mark_finished(self.run_dir)
