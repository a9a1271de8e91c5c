"""Ablation studies: several variants of one config, cross-validated under the same folds
and seeds, compared with a reference variant fold by fold.

A study is a small YAML file (``configs/ablations/*.yaml``)::

    base: full                    # the reference variant (default: the one named full)
    protocol: kfold               # default split protocol (--protocol wins)
    seeds: [42, 43, 44]           # default seeds (--seeds wins)
    variants:
      full: []                                      # the config as it is
      no_pos: [model.student.pos_embedding=none]    # --set-style overrides
      no_kd: {kd: false}                            # a student without a teacher
      fixed_p20: {set: [preproc.dynamic_patch.enabled=false, model.student.p_default=20]}

Every (variant, seed) is an ordinary ``cv`` run folder, ``<run>/<variant>/seed_<seed>``, made
by :func:`xtinyhar.evaluate.cv.plan_cv` and trained through the one scheduler
:func:`xtinyhar.evaluate.cv.schedule_folds` (all runs' folds on one executor: this
process, a local process pool or a Ray cluster). A seed sets
``train.seed``, which also shuffles the subjects into folds: for one seed every variant gets
the same folds (checked before anything runs), so each (fold, seed) pair is a paired
comparison. The table (``<run>/ablation.json``) holds per variant the mean and sample std
of the student's test trial accuracy and macro-F1 over the (fold, seed) pairs, the mean
paired difference to the reference with a 95 % percentile-bootstrap interval over those
pairs (:data:`BOOTSTRAP_RESAMPLES` resamples, RNG seed :data:`BOOTSTRAP_SEED`), and the
student's parameters and MFLOPs.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from xtinyhar.config import PROTOCOLS, Config, _read_yaml, cache_hash, load_config
from xtinyhar.data.splits import resolve_protocol
from xtinyhar.errors import ConfigError, XTinyHARError
from xtinyhar.evaluate.cv import (_check_run_config, _check_run_dir, _finished_record, check_models, cv_splits,
                                  finished_run_reason, plan_cv, run_plans)
from xtinyhar.evaluate.executors import Executor, check_address
from xtinyhar.io import write_json, write_text
from xtinyhar.preprocess.tokens import TokenCache

log = logging.getLogger(__name__)

STUDY_KEYS = ("variants", "base", "protocol", "seeds")
VARIANT_KEYS = ("set", "kd")
RESERVED = {"train.seed": "the study's seeds set it (seeds: or --seeds)",
            "eval.protocol": "the study's protocol sets it (protocol: or --protocol)"}
METRICS = ("accuracy", "f1_macro")
LEVEL = "trial"
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
TABLE = "ablation.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Variant:
    name: str
    overrides: list[str] = field(default_factory=list)   # KEY=VALUE, as --set takes them
    kd: bool = True

    def override_dict(self) -> dict:
        return {key: value for key, value in (_split_override(o) for o in self.overrides)}


@dataclass
class Study:
    path: Path
    variants: list[Variant]
    base: str
    protocol: str | None = None
    seeds: list[int] | None = None

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)


def _split_override(item: str) -> tuple[str, object]:
    key, _, value = item.partition("=")
    return key.strip(), (yaml.safe_load(value) if value.strip() else "")


def _parse_override(item, where: str) -> str:
    if not isinstance(item, str):
        raise ConfigError(f"{where}: {item!r} is not a KEY=VALUE string")
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{where}: {item!r}: expected KEY=VALUE, e.g. model.student.L=2")
    if key.strip() in RESERVED:
        raise ConfigError(f"{where}: {key.strip()} cannot be overridden by a variant; "
                          f"{RESERVED[key.strip()]}")
    try:
        yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(f"{where}: {item!r}: the value is not a valid YAML scalar") from None
    return f"{key.strip()}={value}"


def _parse_variant(name, raw, path: Path) -> Variant:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{path}: variant name {name!r}: use letters, digits, '_', '.' and '-' "
                          "(it names the variant's run folder)")
    where = f"{path}: variant {name!r}"
    kd = True
    if raw is None:
        items = []
    elif isinstance(raw, list):
        items = raw
    elif isinstance(raw, dict):
        unknown = [k for k in raw if k not in VARIANT_KEYS]
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(VARIANT_KEYS)})")
        items = raw.get("set") or []
        if not isinstance(items, list):
            raise ConfigError(f"{where}: set: expected a list of KEY=VALUE strings, got {items!r}")
        kd = raw.get("kd", True)
        if not isinstance(kd, bool):
            raise ConfigError(f"{where}: kd: expected true or false, got {kd!r}")
    else:
        raise ConfigError(f"{where}: expected a list of KEY=VALUE overrides or a mapping with "
                          f"set: and kd:, got {raw!r}")
    overrides = [_parse_override(item, where) for item in items]
    keys = [o.partition("=")[0] for o in overrides]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ConfigError(f"{where}: {repeated[0]} is set twice")
    return Variant(name=name, overrides=overrides, kd=kd)


def load_study(path: str | Path) -> Study:
    """Read and check a study file; a one-line ConfigError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: study file not found" if not path.exists()
                          else f"{path}: is a directory, not a study file")
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with variants: (and optionally base:, "
                          "protocol:, seeds:)")
    unknown = [k for k in raw if k not in STUDY_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(STUDY_KEYS)})")
    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise ConfigError(f"{path}: variants: expected a mapping of variant name -> overrides")
    variants = [_parse_variant(name, value, path) for name, value in variants_raw.items()]
    names = [v.name for v in variants]
    base = raw.get("base", "full")
    if base not in names:
        hint = "" if "base" in raw else " (the default reference; name another with base:)"
        raise ConfigError(f"{path}: base: {base!r} is not one of the variants "
                          f"({', '.join(names)}){hint}")
    protocol = raw.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        raise ConfigError(f"{path}: protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    seeds = raw.get("seeds")
    if seeds is not None:
        seeds = _check_seeds(seeds, f"{path}: seeds")
    return Study(path=path, variants=variants, base=base, protocol=protocol, seeds=seeds)


def select_variants(study: Study, names: list[str] | None) -> Study:
    """The study with only the named variants and its reference (in the study's order), so
    that part of a long study can run, or be tabulated, alone: a (variant, seed) run and
    its paired difference to the reference do not depend on the other variants."""
    if not names:
        return study
    known = [v.name for v in study.variants]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--variants {unknown[0]}: not a variant of {study.path} "
                          f"({', '.join(known)})")
    keep = set(names) | {study.base}
    return Study(path=study.path, variants=[v for v in study.variants if v.name in keep],
                 base=study.base, protocol=study.protocol, seeds=study.seeds)


def _check_seeds(seeds, where: str) -> list[int]:
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise ConfigError(f"{where}: expected a list of whole numbers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: {seeds} repeats a seed")
    return list(seeds)


def study_configs(study: Study, config: str | Path, seeds: list[int],
                  overrides: dict | None = None) -> dict[tuple[str, int], Config]:
    """Each (variant, seed)'s config: ``config`` with ``overrides`` (the command's --set),
    the variant's overrides and ``train.seed``; an error names the study and variant."""
    seeds = _check_seeds(list(seeds), "--seeds")
    cfgs = {}
    for variant in study.variants:
        for seed in seeds:
            try:
                cfgs[variant.name, seed] = load_config(
                    config, {**(overrides or {}), **variant.override_dict(), "train.seed": seed})
            except ConfigError as exc:
                raise ConfigError(f"{study.path}: variant {variant.name!r}: {exc}") from None
    return cfgs


def study_caches(cfgs: dict[tuple[str, int], Config], tokens: str | Path | None = None, *,
                 skip_bad: bool = False) -> dict[str, TokenCache]:
    """One token cache per distinct preprocessing (``cache_hash``): ``tokens`` where it was
    built with that preprocessing, otherwise built in memory from the dataset (loaded once
    per data section); variants that change the patching need their own."""
    from xtinyhar.data import load_dataset
    from xtinyhar.preprocess.tokens import build_token_cache, load_token_cache

    given = load_token_cache(tokens) if tokens else None
    reports: dict[str, object] = {}
    caches: dict[str, TokenCache] = {}
    for (name, _), cfg in cfgs.items():
        key = cache_hash(cfg)
        if key in caches:
            continue
        if given is not None and given.meta.get("config_hash") == key:
            caches[key] = given
            continue
        if given is not None:
            log.info("variant %s: preprocessing differs from --tokens %s; building its token "
                     "cache from the dataset", name, tokens)
        data_key = json.dumps(cfg.to_dict()["data"], sort_keys=True)
        if data_key not in reports:
            reports[data_key] = load_dataset(cfg, skip_bad=skip_bad)
        report = reports[data_key]
        caches[key] = build_token_cache(cfg, report.trials, report.class_names)
    return caches


def _check_paired(study: Study, cfgs: dict, caches: dict, protocol: str, seeds: list[int]) -> None:
    """Refuse a variant whose folds differ from the reference's for some seed (it changes
    the subjects, the fold count or the validation subjects): its scores would not pair."""
    def sides(name, seed):
        cfg = cfgs[name, seed]
        return [(s.train_subjects, s.val_subjects, s.test_subjects)
                for s in cv_splits(cfg, caches[cache_hash(cfg)], protocol)]
    for seed in seeds:
        reference = sides(study.base, seed)
        for variant in study.variants:
            if sides(variant.name, seed) != reference:
                raise ConfigError(f"{study.path}: variant {variant.name!r} gets other folds than "
                                  f"{study.base!r} (seed {seed}); a paired comparison needs the same "
                                  "subjects, fold count and validation subjects: drop its override "
                                  "of data.* or eval.*")


def paired_bootstrap(differences, *, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> dict:
    """Mean of paired differences and its percentile-bootstrap interval: the pairs are
    resampled with replacement ``resamples`` times (``np.random.default_rng(seed)``, so the
    interval is reproducible) and the interval holds the central ``confidence`` of the
    resampled means."""
    values = np.asarray(differences, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError("paired_bootstrap needs a non-empty list of finite differences")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high)}


def student_cost(cfg: Config, n_classes: int) -> tuple[int | None, float | None]:
    """Parameters and MFLOPs (batch 1, one window) of the untrained student, as ``profile``."""
    import torch

    from xtinyhar.evaluate.profile import count_flops, count_parameters
    from xtinyhar.models.factory import build_student

    if cfg.model.student.arch.startswith("minirocket"):
        return None, None
    model = build_student(cfg, n_classes).eval()
    imu = torch.zeros(1, cfg.data.window, cfg.data.imu_channels)
    return count_parameters(model), round(count_flops(model, imu) / 1e6, 3)


def _scores(records: dict[int, dict], metric: str) -> dict[int, float]:
    return {fold: float(r["student"][LEVEL][metric]) for fold, r in records.items()}


def ablation_table(study: Study, records: dict[tuple[str, int], dict[int, dict]], *,
                   costs: dict[str, tuple], protocol: str, seeds: list[int], config: str,
                   run_dirs: dict[tuple[str, int], str]) -> dict:
    """The study's table from each run's fold records (``records[variant, seed][fold]``)."""
    folds = sorted(records[study.base, seeds[0]])
    pairs = [(seed, fold) for seed in seeds for fold in folds]
    rows = []
    for variant in study.variants:
        row = {"name": variant.name, "overrides": variant.overrides, "kd": variant.kd,
               "reference": variant.name == study.base,
               "runs": [run_dirs[variant.name, seed] for seed in seeds],
               "params": costs[variant.name][0], "mflops": costs[variant.name][1],
               "difference": {}}
        for metric in METRICS:
            mine = {seed: _scores(records[variant.name, seed], metric) for seed in seeds}
            base = {seed: _scores(records[study.base, seed], metric) for seed in seeds}
            values = np.array([mine[s][f] for s, f in pairs])
            row[metric] = {"mean": float(values.mean()),
                           "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                           "values": [{"seed": s, "fold": f, "value": mine[s][f]} for s, f in pairs]}
            if variant.name != study.base:
                diffs = [mine[s][f] - base[s][f] for s, f in pairs]
                row["difference"][metric] = {
                    **paired_bootstrap(diffs),
                    "pairs": [{"seed": s, "fold": f, "value": d} for (s, f), d in zip(pairs, diffs)]}
        rows.append(row)
    return {"study": str(study.path), "config": str(config), "protocol": protocol, "seeds": seeds,
            "folds": len(folds), "base": study.base, "level": LEVEL, "model": "student",
            "statistics": {
                "mean_std": "over the (fold, seed) pairs; sample std (ddof=1)",
                "difference": f"variant minus {study.base}, paired per (fold, seed): same test subjects",
                "interval": f"{CONFIDENCE:.0%} percentile bootstrap of the mean difference over the "
                            "(fold, seed) pairs",
                "resamples": BOOTSTRAP_RESAMPLES, "rng_seed": BOOTSTRAP_SEED,
                "cost": "untrained student, batch 1, one window (as `xtinyhar profile`)"},
            "variants": rows}


def format_table(table: dict) -> str:
    """The table as ``xtinyhar ablate`` prints it."""
    def cell(entry):
        return f"{entry['mean']:.3f} +- {entry['std']:.3f}"

    def diff(entry):
        if not entry:
            return "reference"
        return f"{entry['mean']:+.3f} [{entry['low']:+.3f}, {entry['high']:+.3f}]"

    header = (f"{'variant':<16} {'KD':>3} {'accuracy':>15} {'diff [95% CI]':>25} {'macro-F1':>15} "
              f"{'diff [95% CI]':>25} {'params':>9} {'MFLOPs':>7}")
    lines = [header, "-" * len(header)]
    for row in table["variants"]:
        params = f"{row['params']:,}" if row["params"] is not None else "-"
        mflops = f"{row['mflops']:.2f}" if row["mflops"] is not None else "-"
        lines.append(f"{row['name']:<16} {'yes' if row['kd'] else 'no':>3} {cell(row['accuracy']):>15} "
                     f"{diff(row['difference'].get('accuracy')):>25} {cell(row['f1_macro']):>15} "
                     f"{diff(row['difference'].get('f1_macro')):>25} {params:>9} {mflops:>7}")
    stats = table["statistics"]
    lines.append(f"student, test {table['level']} level, {table['protocol']}: {table['folds']} fold(s) x "
                 f"{len(table['seeds'])} seed(s) {table['seeds']}; mean +- sample std over the (fold, seed) "
                 f"pairs; diff = variant - {table['base']} per pair, {stats['interval']} "
                 f"({stats['resamples']} resamples, fixed RNG seed {stats['rng_seed']})")
    return "\n".join(lines)


def run_study(study: Study, cfgs: dict[tuple[str, int], Config], caches: dict[str, TokenCache], *,
              run_dir: str | Path, protocol: str, seeds: list[int], config: str | Path,
              jobs: int = 1, resume: bool = False, address: str | None = None,
              executor: Executor | None = None) -> dict:
    """Run every (variant, seed) as a cv run under ``run_dir`` and write ``ablation.json``.

    All runs' folds go through the one scheduler, on ``jobs`` local workers or, with
    ``address`` (or ``RAY_ADDRESS``), on a Ray cluster, or on ``executor`` (as ``run_cv``).

    Everything is checked before the first folder is made: the configs, the models, the
    pairing of the folds. With ``resume`` a run whose summary and every fold check out
    (:func:`finished_run_reason`) is skipped untouched; any other continues as
    ``cv --resume`` continues it (finished folds kept, a damaged one redone). A run's
    summary.json is written as soon as its last fold finishes, so an interrupted study
    loses only the folds in flight."""
    if jobs < 1:
        raise XTinyHARError(f"--jobs {jobs}: must be at least 1")
    if executor is None:
        check_address(address)
    run_dir = Path(run_dir)
    _check_run_dir(run_dir, resume)
    reference = cfgs[study.base, seeds[0]]
    protocol = resolve_protocol(protocol, caches[cache_hash(reference)].meta)   # auto -> its protocol
    _check_paired(study, cfgs, caches, protocol, seeds)
    for variant in study.variants:
        cfg = cfgs[variant.name, seeds[0]]
        if variant.kd and caches[cache_hash(cfg)].skeleton is None:
            raise ConfigError(f"{study.path}: variant {variant.name!r} distils from a teacher, which "
                              "needs skeleton windows, and the data has none; give it kd: false")
        check_models(cfg, caches[cache_hash(cfg)], kd=variant.kd)

    folders = {(v.name, s): run_dir / v.name / f"seed_{s}" for v in study.variants for s in seeds}
    records: dict[tuple[str, int], dict[int, dict]] = {}
    todo = []
    for (name, seed), folder in folders.items():
        cfg, kd = cfgs[name, seed], study.variant(name).kd
        cache = caches[cache_hash(cfg)]
        if resume and (folder / "config.yaml").exists():   # refused before anything is written
            _check_run_config(folder / "config.yaml", cfg, protocol=protocol, kd=kd)
        if resume and folder.exists():
            reason = finished_run_reason(folder, cfg, cache, protocol=protocol, kd=kd)
            if reason is None:
                log.info("%s: finished earlier; skipping", folder)
                records[name, seed] = {s.fold: _finished_record(folder / "folds" / str(s.fold), s)
                                       for s in cv_splits(cfg, cache, protocol)}
                continue
            log.info("%s: not finished (%s); continuing it", folder, reason)
        todo.append(((name, seed), cfg, cache))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "study.yaml", yaml.safe_dump({
        "study": str(study.path), "config": str(config), "protocol": protocol, "seeds": seeds,
        "base": study.base,
        "variants": {v.name: {"set": v.overrides, "kd": v.kd} for v in study.variants}},
        sort_keys=False))

    plans = {key: plan_cv(cfg, cache, protocol=protocol, run_dir=folders[key], resume=resume,
                          kd=study.variant(key[0]).kd) for key, cfg, cache in todo}
    started = time.perf_counter()
    records |= run_plans(plans, caches, {key: cache_hash(cfg) for key, cfg, _ in todo}, jobs=jobs,
                         address=address, executor=executor,
                         on_finished=lambda key, plan, summary: log.info("%s: finished", plan.run_dir))
    log.info("study: %d run(s) trained in %.0f s", len(plans), time.perf_counter() - started)

    costs = {}
    for variant in study.variants:
        cfg = cfgs[variant.name, seeds[0]]
        costs[variant.name] = student_cost(cfg, len(caches[cache_hash(cfg)].class_names))
    table = ablation_table(study, records, costs=costs, protocol=protocol, seeds=seeds,
                           config=str(config),
                           run_dirs={k: str(Path(v).relative_to(run_dir)) for k, v in folders.items()})
    write_json(run_dir / TABLE, table)
    return table
