"""Run records: the one layout every method writes and every notebook reads, and the :class:`Run` that writes it.

- :mod:`~stlm_core.runs.layout`: the files of a run directory, its id and record, the finished marker;
- :mod:`~stlm_core.runs.lock`: one writer per run directory;
- :mod:`~stlm_core.runs.provenance`: where a result came from;
- :mod:`~stlm_core.runs.maps`: the per-image maps of a run and the one rule that scores them;
- :mod:`~stlm_core.runs.table`: finished runs read back as one table;
- :mod:`~stlm_core.runs.examples`: example images and maps of a run, for figures;
- :mod:`~stlm_core.runs.run`: :class:`Run`, the lifecycle (plan, write, log, checkpoint, finish) on top of them;
- :mod:`~stlm_core.runs.archive`: recorded runs (records without weights or maps) packed, unpacked and checked.
"""

from stlm_core.runs.layout import (CHECKPOINT_FILE, CONFIG_FILE, DATA_FILE, EXTRAS_FILE, FINISHED_FILE, LOCK_FILE,
                                   LOSSES_FILE, MAPS_FILE, METRICS_FILE, PROVENANCE_KEY, RECORDED_FILE,
                                   SECONDARY_KEY, SEMANTICS_VERSION, begin_run, clear_results, config_id, is_finished,
                                   mark_finished, prepare_run_dir, read_config, recorded_provenance, run_dir_for,
                                   run_record, write_metrics)
from stlm_core.runs.examples import example_rows
from stlm_core.runs.lock import LOCK_HEARTBEAT_S, LOCK_STALE_S, RunLocked, run_lock
from stlm_core.runs.maps import RunMaps, load_maps, save_maps, score_maps
from stlm_core.runs.provenance import git_commit, make_provenance
from stlm_core.runs.run import Run
from stlm_core.runs.table import load_runs, read_extras, read_losses, read_run, recipe_runs

__all__ = [
    "CHECKPOINT_FILE", "CONFIG_FILE", "DATA_FILE", "EXTRAS_FILE", "FINISHED_FILE", "LOCK_FILE", "LOSSES_FILE",
    "MAPS_FILE", "METRICS_FILE", "PROVENANCE_KEY", "RECORDED_FILE", "SECONDARY_KEY", "SEMANTICS_VERSION", "LOCK_HEARTBEAT_S",
    "LOCK_STALE_S", "Run", "RunLocked", "RunMaps", "begin_run", "clear_results", "config_id", "example_rows", "git_commit",
    "is_finished", "load_maps", "load_runs", "make_provenance", "mark_finished", "prepare_run_dir", "read_config",
    "read_extras", "read_losses", "read_run", "recipe_runs", "recorded_provenance", "run_dir_for", "run_lock", "run_record", "save_maps",
    "score_maps", "write_metrics",
]
