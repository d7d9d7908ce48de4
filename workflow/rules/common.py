"""The study plan as data -> the jobs of the workflow.

A plan (``workflow/plans/*.yaml``) names the profile, the datasets (library layout, root, categories), the grid of
each method (datasets, STLM variants, seeds, the CLIP-SAM adapter pairing), benchmarks and per-rule resources. This
module turns it into job records and marker paths; the Snakefile only wires them to rules, and the tests compute
their own expectations from the plan YAML.

Marker of a run job: ``results/<plan>/<method>/<dataset>/<category>/<variant>/<seed>.done``, holding the run directory
(written only once that run's ``finished.json`` exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_RESOURCES = {"threads": 1, "mem_mb": 2000, "runtime": 30, "gpu": 0}
TRAINING_FREE = "training_free"


class PlanError(ValueError):
    """The plan file is inconsistent (unknown dataset, variant, layout, ...)."""


@dataclass(frozen=True)
class Job:
    rule: str
    method: str          # folder under results/<plan>/
    dataset: str         # plan dataset key
    category: str
    variant: str
    seed: int

    def marker(self, plan: str) -> str:
        return f"results/{plan}/{self.method}/{self.dataset}/{self.category}/{self.variant}/{self.seed}.done"


class Plan:
    def __init__(self, config: dict[str, Any]):
        if not config:
            raise PlanError("no plan: pass --configfile workflow/plans/<plan>.yaml")
        self.config = config
        self.name: str = config["plan"]
        self.profile: str = config["profile"]
        self.device: str = config.get("device", "auto")
        self.runs_dir: str = config.get("runs_dir", f"results/{self.name}/runs")
        self.datasets: dict[str, dict] = config.get("datasets", {})
        self.methods: dict[str, dict] = config.get("methods", {})
        self._check()

    # ------------------------------------------------------------------------------------------ datasets
    def layout(self, key: str) -> str:
        return self.datasets[key].get("layout", key)

    def generated(self, key: str) -> bool:
        return "generate" in self.datasets[key]

    def root(self, key: str) -> str:
        """Dataset root; a generated (synthetic) dataset lives in ``results/<plan>/data/<key>``."""
        if self.generated(key):
            return f"results/{self.name}/data/{key}"
        return str(self.datasets[key]["root"])

    def data_inputs(self, key: str) -> list[str]:
        """Files a job on ``key`` waits for: the generated dataset's README (real data needs nothing)."""
        return [f"{self.root(key)}/README.txt"] if self.generated(key) else []

    def categories(self, key: str) -> list[str]:
        cats = self.datasets[key].get("categories", "all")
        if cats == "all":
            if self.generated(key):
                from stlm_core.data.synthetic import CATEGORIES

                return list(CATEGORIES)
            from stlm_core.data.registry import list_categories

            return list_categories(self.layout(key), self.root(key))
        return [str(c) for c in cats]

    # ------------------------------------------------------------------------------------------ jobs
    def seeds(self, method: str) -> list[int]:
        return [int(s) for s in self.methods.get(method, {}).get("seeds", [0])]

    def stlm_jobs(self) -> list[Job]:
        m = self.methods.get("stlm")
        if not m:
            return []
        return [Job("stlm_train", "stlm", d, c, v, s) for d in m["datasets"] for c in self.categories(d)
                for v in m.get("variants", ["cpu"]) for s in self.seeds("stlm")]

    def stlm_steps(self) -> int | None:
        """``methods.stlm.steps``: optimisation steps of every STLM job (``None``: the profile's schedule)."""
        steps = (self.methods.get("stlm") or {}).get("steps")
        return None if steps is None else int(steps)

    def adapter_pairs(self) -> list[dict]:
        return list((self.methods.get("clipsam") or {}).get("adapters") or [])

    def clipsam_jobs(self) -> list[Job]:
        m = self.methods.get("clipsam")
        if not m:
            return []
        jobs = [Job("clipsam_zeroshot", "clipsam", d, c, TRAINING_FREE, s)
                for d in m.get("datasets", []) for c in self.categories(d) for s in self.seeds("clipsam")]
        jobs += [Job("clipsam_zeroshot", "clipsam", p["test"], c, f"adapters_{p['train']}", s)
                 for p in self.adapter_pairs() for c in self.categories(p["test"]) for s in self.seeds("clipsam")]
        return jobs

    def adapter_files(self) -> list[str]:
        return sorted({self.adapter_file(p["train"], s) for p in self.adapter_pairs() for s in self.seeds("clipsam")})

    def adapter_file(self, train_key: str, seed: int | str) -> str:
        return f"results/{self.name}/clipsam_adapters/{train_key}/{seed}.pt"

    def patchcore_jobs(self) -> list[Job]:
        m = self.methods.get("patchcore")
        if not m:
            return []
        return [Job("patchcore", "patchcore", d, c, "default", s)
                for d in m["datasets"] for c in self.categories(d) for s in self.seeds("patchcore")]

    def run_jobs(self) -> list[Job]:
        return self.stlm_jobs() + self.clipsam_jobs() + self.patchcore_jobs()

    def run_markers(self) -> list[str]:
        return [job.marker(self.name) for job in self.run_jobs()]

    def benchmarks(self) -> list[dict]:
        return list(self.config.get("benchmarks") or [])

    def bench_files(self) -> list[str]:
        return [f"results/{self.name}/bench/{b['name']}.json" for b in self.benchmarks()]

    def bench(self, name: str) -> dict:
        return next(b for b in self.benchmarks() if b["name"] == name)

    # ------------------------------------------------------------------------------------------ book
    def book(self) -> dict | None:
        book = self.config.get("book")
        return book if book and book.get("enabled", True) else None

    def book_marker(self) -> str:
        return f"results/{self.name}/book.done"

    # ------------------------------------------------------------------------------------------ resources
    def resources(self, rule: str, dataset: str | None = None) -> dict[str, Any]:
        """threads, mem_mb, runtime (minutes), gpu of ``rule``: DEFAULT_RESOURCES < ``default`` < the rule's entry
        < its ``by_dataset: {<dataset>: {...}}`` entry for ``dataset`` (e.g. a longer runtime for larger datasets)."""
        table = self.config.get("resources") or {}
        entry = dict(table.get(rule) or {})
        by_dataset = entry.pop("by_dataset", None) or {}
        out = {**DEFAULT_RESOURCES, **(table.get("default") or {}), **entry}
        if dataset is not None:
            out.update(by_dataset.get(dataset) or {})
        return out

    # ------------------------------------------------------------------------------------------ checks
    def _check(self) -> None:
        from stlm_core.configs import PROFILES
        from stlm_core.data.registry import DATASET_NAMES

        if self.profile not in PROFILES:
            raise PlanError(f"profile {self.profile!r} is not one of {', '.join(PROFILES)}")
        for key, spec in self.datasets.items():
            if self.layout(key) not in DATASET_NAMES:
                raise PlanError(f"dataset {key}: layout {self.layout(key)!r} is not one of {', '.join(DATASET_NAMES)}")
            if "generate" in spec and self.layout(key) != "synthetic":
                raise PlanError(f"dataset {key}: only synthetic data can be generated")
            if "generate" not in spec and "root" not in spec:
                raise PlanError(f"dataset {key}: give its root (or `generate:` for synthetic data)")
        used = [d for m in self.methods.values() for d in (m or {}).get("datasets", [])]
        used += [p[k] for p in self.adapter_pairs() for k in ("train", "test")]
        unknown = sorted(set(used) - set(self.datasets))
        if unknown:
            raise PlanError(f"datasets used by a method but not declared under datasets: {', '.join(unknown)}")
        for pair in self.adapter_pairs():
            if pair["train"] == pair["test"]:
                raise PlanError(f"adapters trained on {pair['train']} must be applied to ANOTHER dataset")
        variants = (self.methods.get("stlm") or {}).get("variants", [])
        if variants:
            from stlm_core.stlm.study import VARIANTS

            bad = [v for v in variants if v not in VARIANTS]
            if bad:
                raise PlanError(f"unknown STLM variants {bad}; known: {', '.join(VARIANTS)}")
        for m in self.methods:
            if m not in ("stlm", "clipsam", "patchcore"):
                raise PlanError(f"unknown method {m!r} (stlm, clipsam, patchcore)")
