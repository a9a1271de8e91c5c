"""``xtinyhar <subcommand>``: parses arguments and calls library functions; nothing more.

Errors caused by user input (:class:`XTinyHARError`) print as one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

from xtinyhar import __version__
from xtinyhar.config import DATASETS, PROTOCOLS, load_config
from xtinyhar.errors import XTinyHARError

log = logging.getLogger("xtinyhar")


def parse_overrides(items: list[str] | None) -> dict:
    """``--set a.b=value`` pairs -> overrides; values read as YAML scalars (3, 1e-3, true)."""
    import yaml

    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise XTinyHARError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=10")
        try:
            overrides[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            raise XTinyHARError(f"--set {item!r}: the value is not a valid YAML scalar") from None
    return overrides


def _output_file(value: str, flag: str, suffix: str) -> Path:
    """Check an output path before any work is done: the right suffix, not a directory, a
    folder that exists or can be made and is writable."""
    path = Path(value)
    if path.suffix != suffix:
        raise XTinyHARError(f"{flag} {value}: should end in {suffix}")
    if path.is_dir():
        raise XTinyHARError(f"{flag} {value}: is a directory")
    _writable_folder(path.parent, f"{flag} {value}")
    return path


def _writable_folder(folder: Path, what: str) -> None:
    """The nearest existing folder at or above ``folder`` must take a new file (a probe file
    is made and removed), so a bad output location fails before any work is done."""
    from xtinyhar.io import check_writable

    existing = next((p for p in [folder, *folder.parents] if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise XTinyHARError(f"{what}: cannot write into {existing}")
    check_writable(existing, what)


def _load_cfg(args: argparse.Namespace):
    overrides = parse_overrides(getattr(args, "set", None))
    if getattr(args, "dataset", None):
        overrides["data.dataset"] = args.dataset
    if getattr(args, "root", None):
        overrides["data.root"] = str(Path(args.root).resolve())
    return load_config(args.config, overrides)


def cmd_prepare(args: argparse.Namespace) -> int:
    """Load a dataset, build the token cache, write it atomically, print a summary."""
    from xtinyhar.data import load_dataset
    from xtinyhar.preprocess.tokens import build_token_cache, save_token_cache, summarize

    _output_file(args.out, "--out", ".npz")
    cfg = _load_cfg(args)
    started = time.perf_counter()
    report = load_dataset(cfg, skip_bad=args.skip_bad)
    loaded = time.perf_counter()
    cache = build_token_cache(cfg, report.trials, report.class_names)
    save_token_cache(args.out, cache)
    done = time.perf_counter()
    print(summarize(cache))
    if report.skipped:
        print(f"skipped     {len(report.skipped)} bad trial(s) (--skip-bad); first: {report.skipped[0]}")
    print(f"time        load {loaded - started:.1f} s, prepare + write {done - loaded:.1f} s")
    print(f"wrote       {args.out}")
    return 0


def _cache_for(cfg, args):
    """The token cache from --tokens (refused if stale), or built in memory from the config."""
    from xtinyhar.data import load_dataset
    from xtinyhar.preprocess.tokens import build_token_cache, load_token_cache

    if getattr(args, "tokens", None):
        if getattr(args, "root", None):
            raise XTinyHARError(f"--root {args.root} and --tokens {args.tokens}: the token cache "
                                "already holds the data; give one of them")
        return load_token_cache(args.tokens, cfg)
    report = load_dataset(cfg, skip_bad=getattr(args, "skip_bad", False))
    return build_token_cache(cfg, report.trials, report.class_names)


def _split(cfg, cache, args):
    from xtinyhar.data.splits import splits_for_cache, standard_train_subjects

    wanted = args.protocol or ("auto" if cfg.data.dataset == "custom" else "standard")
    protocol, splits = splits_for_cache(cache, wanted, folds=cfg.eval.folds, seed=cfg.train.seed,
                                        val_subjects=cfg.eval.val_subjects,
                                        standard_train=standard_train_subjects(cfg.data.dataset))
    if protocol != wanted:
        print(f"protocol {wanted}: {protocol}")
    if not 0 <= args.fold < len(splits):
        raise XTinyHARError(f"--fold {args.fold}: protocol {protocol} has folds 0..{len(splits) - 1}")
    return splits[args.fold]


KD_OFF = "KD off: the data has no skeleton, so the student trains without a teacher"


def _report_test(model, cache, split, cfg, teacher: bool) -> None:
    from xtinyhar.evaluate.cv import evaluate_on

    metrics, _ = evaluate_on(model, cache, split.test, teacher=teacher, averaging=cfg.eval.averaging)
    for level in ("window", "trial"):
        m = metrics[level]
        print(f"test {level:6s} accuracy {m['accuracy']:.3f}  macro-F1 {m['f1_macro']:.3f}  "
              f"kappa {m['kappa'] if m['kappa'] is None else round(m['kappa'], 3)}  (n={m['n']})")


def _workdir(out: str) -> Path:
    """Resume state of a training command: ``<out>.fit/`` beside the checkpoint."""
    return Path(str(out) + ".fit")


def _finish_fit(result, workdir: Path, out: str) -> None:
    """Keep the epoch history beside the checkpoint, drop the resume state, report."""
    history = workdir / "history.csv"
    if history.exists():
        os.replace(history, Path(str(out)).with_suffix(".history.csv"))
    shutil.rmtree(workdir, ignore_errors=True)
    chosen = ("last epoch, no validation subjects" if math.isnan(result.best_score)
              else f"validation macro-F1 {result.best_score:.3f}")
    print(f"kept epoch {result.best_epoch} ({chosen}), {result.seconds:.0f} s")


def cmd_train_teacher(args: argparse.Namespace) -> int:
    """Train the multimodal teacher on one split's training subjects and save it."""
    from xtinyhar.train.checkpoints import save_model
    from xtinyhar.train.tasks import fit_teacher

    _output_file(args.out, "--out", ".pt")
    cfg = _load_cfg(args)
    cache = _cache_for(cfg, args)
    split = _split(cfg, cache, args)
    print(f"train subjects {split.train_subjects}, validation {split.val_subjects}, "
          f"test {split.test_subjects}")
    workdir = _workdir(args.out)
    trained = fit_teacher(cfg, cache, split.train, split.val, workdir=workdir, resume=args.resume)
    save_model(args.out, trained.model, cfg=cfg, class_names=cache.class_names,
               cache_hash=cache.meta["config_hash"], train_subjects=list(split.train_subjects),
               extra={"val_subjects": [int(s) for s in split.val_subjects],
                             "test_subjects": [int(s) for s in split.test_subjects]})
    _finish_fit(trained.result, workdir, args.out)
    _report_test(trained.model, cache, split, cfg, teacher=True)
    print(f"wrote {args.out}")
    return 0


def cmd_train_student(args: argparse.Namespace) -> int:
    """Train the IMU-only student (distilled from --teacher unless --no-kd) and save it."""
    from xtinyhar.train.checkpoints import check_teacher, load_model, save_model
    from xtinyhar.train.tasks import fit_student

    if args.no_kd and args.teacher:
        raise XTinyHARError(f"--no-kd and --teacher {args.teacher}: choose one (a student "
                            "without KD uses no teacher)")
    _output_file(args.out, "--out", ".pt")
    cfg = _load_cfg(args)
    cache = _cache_for(cfg, args)
    split = _split(cfg, cache, args)
    teacher = None
    if not args.no_kd and not args.teacher and cache.skeleton is None:
        print(KD_OFF)
    elif not args.no_kd:
        if not args.teacher:
            raise XTinyHARError("train-student needs --teacher CHECKPOINT (or --no-kd)")
        teacher, payload = load_model(args.teacher, "teacher")
        check_teacher(args.teacher, payload, split.train_subjects, cache.meta["config_hash"])
    workdir = _workdir(args.out)
    trained = fit_student(cfg, cache, split.train, split.val, teacher=teacher, workdir=workdir,
                          resume=args.resume)
    save_model(args.out, trained.model, cfg=cfg, class_names=cache.class_names,
               cache_hash=cache.meta["config_hash"], train_subjects=list(split.train_subjects),
               extra={"distilled": teacher is not None,
                      "val_subjects": [int(s) for s in split.val_subjects],
                             "test_subjects": [int(s) for s in split.test_subjects]})
    _finish_fit(trained.result, workdir, args.out)
    _report_test(trained.model, cache, split, cfg, teacher=False)
    print(f"wrote {args.out}")
    return 0


def cmd_cv(args: argparse.Namespace) -> int:
    """Cross-validate teacher + student; write runs/<name>/ and print mean +- std."""
    from xtinyhar.data.splits import resolve_protocol
    from xtinyhar.evaluate.cv import run_cv, summary_table

    if not Path(args.out).is_file():   # a file there: run_cv names the problem
        _writable_folder(Path(args.out), f"--out {args.out}")
    cfg = _load_cfg(args)
    cache = _cache_for(cfg, args)
    kd = not args.no_kd
    if kd and cache.skeleton is None:
        print(KD_OFF)
        kd = False
    summary = run_cv(cfg, cache, protocol=resolve_protocol(args.protocol or cfg.eval.protocol, cache.meta),
                     run_dir=args.out, resume=args.resume, kd=kd, max_folds=args.max_folds,
                     jobs=args.jobs, address=args.address)
    wall = summary["wall_seconds"]
    wall = f"{wall:.0f} s wall" if wall is not None else "resumed"
    print(f"{summary['protocol']}: {summary['folds']} fold(s), {wall} ({summary['seconds']:.0f} s "
          f"of fold time, {summary['jobs']} job(s)), test subjects only; mean +- std over folds")
    print(summary_table(summary))
    print(f"wrote {args.out}/summary.json")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    """Run an ablation study: every variant x seed as a cv run, then the paired table."""
    from xtinyhar.evaluate.ablate import (TABLE, format_table, load_study, run_study,
                                          select_variants, study_caches, study_configs)

    study = select_variants(load_study(args.study), args.variants)   # checked before anything else
    if not Path(args.out).is_file():   # a file there: run_study names the problem
        _writable_folder(Path(args.out), f"--out {args.out}")
    overrides = parse_overrides(args.set)
    if args.dataset:
        overrides["data.dataset"] = args.dataset
    if args.root:
        if args.tokens:
            raise XTinyHARError(f"--root {args.root} and --tokens {args.tokens}: the token cache "
                                "already holds the data; give one of them")
        overrides["data.root"] = str(Path(args.root).resolve())
    base = load_config(args.config, overrides)
    seeds = args.seeds or study.seeds or [base.train.seed]
    protocol = args.protocol or study.protocol or base.eval.protocol
    cfgs = study_configs(study, args.config, seeds, overrides)
    caches = study_caches(cfgs, args.tokens)
    table = run_study(study, cfgs, caches, run_dir=args.out, protocol=protocol, seeds=seeds,
                      config=args.config, jobs=args.jobs, resume=args.resume, address=args.address)
    print(f"{study.path}: {len(study.variants)} variant(s) x {len(seeds)} seed(s), {table['protocol']}, "
          f"test subjects only")
    print(format_table(table))
    print(f"wrote {Path(args.out) / TABLE}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Parameters, size and FLOPs (attention included) of the student and the teacher, or
    (--model) the device runtime's latency of exported files."""
    if args.model:
        return _profile_exported(args)
    given = [flag for flag, value in (("--input", args.input), ("--threads", args.threads),
                                      ("--warmup", args.warmup)) if value is not None]
    if given:
        raise XTinyHARError(f"{', '.join(given)} only apply with --model (exported files)")
    import torch

    from xtinyhar.evaluate.profile import profile_model
    from xtinyhar.models.teacher import STConvTeacher
    from xtinyhar.models.factory import build_student, teacher_config
    from xtinyhar.train.checkpoints import load_model

    runs = 1000 if args.runs is None else args.runs
    for flag, value in (("--runs", runs), ("--n-classes", args.n_classes), ("--n-joints", args.n_joints)):
        if value is not None and value < 1:
            raise XTinyHARError(f"{flag} {value}: must be at least 1")
    if args.checkpoint:
        ignored = [flag for flag, value in (("--config", args.config), ("--set", args.set),
                                            ("--dataset", args.dataset), ("--n-classes", args.n_classes),
                                            ("--n-joints", args.n_joints)) if value is not None]
        if ignored:
            raise XTinyHARError(f"profile --checkpoint takes its settings from the checkpoint; "
                                f"{', '.join(ignored)} only apply with --config")
    models = []
    if args.checkpoint:
        for path in args.checkpoint:
            model, payload = load_model(path)
            models.append((f"{payload['kind']} ({path})", model))
    elif not args.config:
        raise XTinyHARError("profile needs --config (untrained models), --checkpoint CHECKPOINT ... "
                            "or --model EXPORTED_FILE ...")
    else:
        cfg = _load_cfg(args)
        n_classes, joints = args.n_classes or 27, args.n_joints or 20
        models = [(f"student ({cfg.model.student.arch})", build_student(cfg, n_classes).eval())]
        if cfg.data.dataset == "custom":   # own data has no skeleton, so no teacher
            print("own data (data.dataset custom): no skeleton, so no teacher to profile")
        else:
            models.append(("teacher", STConvTeacher(teacher_config(cfg, n_classes, joints)).eval()))
    header = f"{'model':<40} {'params':>9} {'size KB':>9} {'MFLOPs':>9}"
    print(header + "   (batch 1, one window" + (", latency on 1 thread)" if args.latency else ")"))
    for name, model in models:
        cfg_m = model.cfg
        imu = torch.zeros(1, cfg_m.window, cfg_m.channels)
        inputs = (imu,) if not hasattr(cfg_m, "skeleton_frames") else (
            imu, torch.zeros(1, cfg_m.skeleton_frames, cfg_m.joints, 3))
        prof = profile_model(name, model, *inputs)
        print(f"{name:<40} {prof.params:>9,} {prof.size_bytes / 1024:>9.1f} {prof.flops / 1e6:>9.2f}")
        if args.latency:
            print("\n".join(_edge_rows(model, inputs, runs)))
    return 0


def _profile_exported(args: argparse.Namespace) -> int:
    """Time exported .onnx / .tflite files with the device runtime (numpy and ONNX Runtime
    or LiteRT only: this path imports neither torch nor PyYAML, so it runs on a device)."""
    from xtinyhar.export.device_timing import timing_table

    given = [flag for flag, value in (("--config", args.config), ("--set", args.set),
                                      ("--dataset", args.dataset), ("--checkpoint", args.checkpoint),
                                      ("--n-classes", args.n_classes), ("--n-joints", args.n_joints))
             if value is not None] + (["--latency"] if args.latency else [])
    if given:
        raise XTinyHARError(f"profile --model times exported files; {', '.join(given)} do not apply")
    for line in timing_table(args.model, input_path=args.input,
                             runs=1000 if args.runs is None else args.runs,
                             warmup=100 if args.warmup is None else args.warmup,
                             threads=1 if args.threads is None else args.threads):
        print(line, flush=True)
    return 0


def _edge_rows(model, inputs, runs: int) -> list[str]:
    """Peak inference memory, then file size and batch-1 latency (1 thread) per runtime:
    PyTorch eager, ONNX Runtime fp32 and int8, TFLite fp32 and int8 (when the tflite extra
    is installed). int8 files are calibrated on the profiling window itself: their size and
    speed are real, their accuracy is not (``xtinyhar export --int8`` reports that)."""
    import importlib.util
    import tempfile

    import numpy as np
    import torch

    from xtinyhar.evaluate.profile import measure_latency, peak_memory_bytes

    def call():
        with torch.inference_mode():
            model(*inputs)
    rows = [f"  peak inference memory {peak_memory_bytes(call) / 2**20:.2f} MB",
            f"  {'runtime':<22} {'file KB':>9} {'median ms':>10} {'p95 ms':>8}"]

    def row(name, size, latency):
        size_text = f"{size / 1024:.1f}" if size is not None else "-"
        rows.append(f"  {name:<22} {size_text:>9} {latency['median_ms']:>10.3f} {latency['p95_ms']:>8.3f}")
    row("PyTorch eager", None, measure_latency(call, runs=runs))
    if len(inputs) != 1:          # the teacher also needs a skeleton: no edge export
        return rows
    from xtinyhar.export.to_onnx import export_onnx, onnx_session, quantize_onnx_int8

    window = inputs[0].numpy()
    meta = {"window": model.cfg.window, "channels": model.cfg.channels}
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(model, Path(folder) / "m.onnx", meta)
        calibration = np.repeat(window, 8, axis=0)
        int8 = quantize_onnx_int8(path, Path(folder) / "m_int8.onnx", calibration, meta)
        for name, file in (("ONNX Runtime fp32", path), ("ONNX Runtime int8", int8)):
            inference = onnx_session(file, threads=1)
            row(name, file.stat().st_size, measure_latency(lambda: inference.run(None, {"imu": window}), runs=runs))
        if all(importlib.util.find_spec(m) for m in ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")):
            from xtinyhar.export.to_tflite import (export_tflite, quantize_tflite_dynamic,
                                                   tflite_interpreter)

            fp32 = export_tflite(model, Path(folder) / "m.tflite", meta)
            dynamic = quantize_tflite_dynamic(fp32, Path(folder) / "m_int8.tflite", meta)
            for name, file in (("TFLite fp32", fp32), ("TFLite int8 (dynamic)", dynamic)):
                it = tflite_interpreter(file, threads=1)
                index_in, index_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

                def invoke():
                    it.set_tensor(index_in, window)
                    it.invoke()
                    it.get_tensor(index_out)
                row(name, file.stat().st_size, measure_latency(invoke, runs=runs))
        else:
            rows.append("  TFLite: not installed (pip install -e '.[tflite]')")
    return rows


def cmd_export(args: argparse.Namespace) -> int:
    """Export a student checkpoint to ONNX or TFLite (+ int8), with parity and accuracy on
    held-out subjects."""
    from xtinyhar.export.to_onnx import Int8Guard, export_checkpoint
    from xtinyhar.train.checkpoints import load_model

    guard = Int8Guard(args.int8_min_agreement, args.int8_max_drop)   # checked before any work
    suffix = ".tflite" if args.format == "tflite" else ".onnx"
    if Path(args.out).suffix != suffix:
        raise XTinyHARError(f"--out {args.out}: a {args.format} file should end in {suffix}")
    if not math.isfinite(args.tolerance) or args.tolerance <= 0:
        raise XTinyHARError(f"--tolerance {args.tolerance}: must be a positive number")
    out = _output_file(args.out, "--out", suffix)
    written = [out, out.with_name(out.name + ".json")]
    if args.int8:
        int8 = out.with_name(out.stem + "_int8" + suffix)
        written += [int8, int8.with_name(int8.name + ".json")]
    for path in written[1:]:
        if path.is_dir():
            raise XTinyHARError(f"--out {args.out}: {path} would be written and is a directory")
    model, payload = load_model(args.checkpoint)
    if payload["kind"] != "student":
        raise XTinyHARError(f"{args.checkpoint}: is a {payload['kind']} checkpoint; export takes the "
                            "IMU-only student (the teacher needs a skeleton a wearable does not have)")
    _, cache = _student_data(args, payload, args.checkpoint)
    if args.format == "tflite":
        from xtinyhar.export.to_tflite import export_checkpoint_tflite

        reports = export_checkpoint_tflite(model, payload, cache, args.out, int8=args.int8,
                                           tolerance=args.tolerance, guard=guard)
    else:
        reports = export_checkpoint(model, payload, cache, args.out, int8=args.int8,
                                    tolerance=args.tolerance, guard=guard)
    for precision, r in reports.items():
        acc = r["accuracy"]
        parity = (f"max |logit diff| vs PyTorch {r['parity_max_abs']:.2e}" if precision == "fp32" else
                  f"max |logit diff| {r['parity_max_abs']:.3f}, fp32's class on "
                  f"{r['agreement_with_fp32']:.1%} of windows")
        print(f"{precision}: {r['file']} ({r['bytes'] / 1024:.1f} KB); {parity}; held-out subjects "
              f"{r['held_out_subjects']}: window accuracy {acc['window']:.3f}, trial accuracy "
              f"{acc['trial']:.3f} ({acc['trials']} trials)")
    if "int8" in reports:
        q = reports["int8"]
        print(f"int8 trial accuracy change vs fp32: {q['trial_accuracy_change_vs_fp32']:+.3f}; "
              f"agreement {q['agreement_with_fp32']:.3f} measured on this {q['measured_on']['machine']} "
              f"CPU (guard: >= {q['guard']['min_agreement']:g}, drop <= {q['guard']['max_accuracy_drop']:g})")
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    """Replay a recorded trial through the device runtime: one prediction per stride, then
    the whole-trial one (a whole-trial model: only the latter)."""
    import numpy as np

    from xtinyhar.export.recording import read_imu_csv
    from xtinyhar.export.runtime import HarModel, Streamer
    from xtinyhar.preprocess.arrays import pad_end

    for flag, value in (("--chunk", args.chunk), ("--stride", args.stride)):
        if value is not None and value < 1:
            raise XTinyHARError(f"{flag} {value}: must be >= 1")
    model = HarModel(args.model)
    print(model.precision_note())
    path = Path(args.input)
    if path.suffix == ".mat":
        from xtinyhar.data.utd_mhad import read_inertial

        if model.imu_hz != 50:
            raise XTinyHARError(f"{path}: UTD-MHAD files are 50 Hz, the model expects "
                                f"{model.imu_hz:g} Hz; resample and pass a CSV")
        imu = read_inertial(path)
    else:
        imu = read_imu_csv(path, model.channels)

    def show(prefix: str, label: str, probs) -> None:
        top = np.argsort(probs)[::-1][:3]
        ranked = ", ".join(f"{model.class_names[k]} {probs[k]:.2f}" for k in top)
        print(f"{prefix}  {label:<24} ({ranked})")

    if model.segmentation == "trial":   # trained on whole trials: one prediction per recording
        if args.stride is not None or args.pad:
            raise XTinyHARError(f"{args.model}: a whole-trial model (segmentation: trial) takes the "
                                "recording as one trial; --stride and --pad do not apply")
        print(f"{path.name}: {len(imu)} samples at {model.imu_hz:g} Hz; the model classifies whole "
              f"trials (stretched onto {model.window} samples), so the recording is one trial")
        show("whole trial", *model.predict_trial(imu, str(path)))
        return 0
    if len(imu) < model.window:
        if not args.pad:
            raise XTinyHARError(f"{path}: {len(imu)} samples, fewer than the model's window of "
                                f"{model.window} ({model.window / model.imu_hz:g} s at "
                                f"{model.imu_hz:g} Hz); --pad repeats the last sample as training does")
        imu = pad_end(imu, model.window)
        print(f"{path.name}: padded to {model.window} samples by repeating the last one")
    stream = Streamer(model, args.stride)
    print(f"{path.name}: {len(imu)} samples at {model.imu_hz:g} Hz, window {model.window}, "
          f"stride {stream.stride}")
    for start in range(0, len(imu), args.chunk):          # samples arrive in small chunks
        for event in stream.push(imu[start:start + args.chunk], str(path)):
            show(f"t={event.time_s:6.2f} s", event.label, event.probs)
    if args.stride is None:   # the windows evaluation pools: this recording as one trial
        show("whole trial (mean of its windows)", *model.predict_trial(imu, str(path)))
    return 0


def read_predict_input(path: Path) -> "np.ndarray":
    """One recording for ``predict``: a CSV (bare numbers, or a header row of channel names
    whose time column is left out) or a UTD-MHAD ``*_inertial.mat``; float32 (T, C)."""
    from xtinyhar.export.recording import read_imu_csv

    if path.suffix.lower() == ".mat":
        from xtinyhar.data.utd_mhad import read_inertial
        return read_inertial(path)
    return read_imu_csv(path)


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify recordings with an exported model: per recording (and per window for a
    sliding-window model) a label and class probabilities; --out writes them as CSV."""
    import numpy as np

    from xtinyhar.export.runtime import HarModel
    from xtinyhar.io import write_csv
    from xtinyhar.preprocess.arrays import window_starts

    out = _output_file(args.out, "--out", ".csv") if args.out else None
    if args.hz is not None and not (math.isfinite(args.hz) and args.hz > 0):
        raise XTinyHARError(f"--hz {args.hz}: must be a positive number")
    source = Path(args.input)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".csv", ".mat")
                       and p.name.lower() != "manifest.csv")
        if not files:
            raise XTinyHARError(f"{source}: no .csv or .mat recordings in the folder")
    elif source.is_file():
        files = [source]
    else:
        raise XTinyHARError(f"{source}: --input not found")
    model = HarModel(args.model)
    print(model.precision_note())
    names = model.class_names
    rows = []

    def record(file: Path, window, start, label: str, probs) -> None:
        rows.append({"file": str(file), "window": window, "start_s": start, "label": label,
                     **{f"p_{name}": round(float(p), 6) for name, p in zip(names, probs)}})

    for file in files:
        imu = read_predict_input(file)
        if imu.ndim != 2 or imu.shape[1] != model.channels:
            raise XTinyHARError(f"{file}: {imu.shape[1] if imu.ndim == 2 else '?'} channel(s), the "
                                f"model expects {model.channels}")
        if args.hz is not None and not math.isclose(args.hz, model.imu_hz):
            from xtinyhar.preprocess.resample import resample_rate
            imu = resample_rate(imu.astype(np.float32), args.hz, model.imu_hz)
        windows = model.trial_windows(imu, str(file))
        probs = model.predict_proba(windows, str(file))
        trial = probs.mean(axis=0)
        top = np.argsort(trial)[::-1][:3]
        ranked = ", ".join(f"{names[k]} {trial[k]:.2f}" for k in top)
        print(f"{file.name}: {names[int(trial.argmax())]} ({ranked})")
        if model.segmentation == "sliding":
            starts = window_starts(len(imu), model.window, model.stride)
            for k, (start, p) in enumerate(zip(starts, probs)):
                label = names[int(p.argmax())]
                print(f"  window {k} t={start / model.imu_hz:7.2f} s  {label} {p.max():.2f}")
                record(file, k, round(float(start / model.imu_hz), 4), label, p)
        record(file, "all", "", names[int(trial.argmax())], trial)
    if out is not None:
        write_csv(out, rows)
        print(f"wrote {out} ({len(files)} recording(s), {len(rows)} row(s))")
    return 0


def _student_data(args, payload: dict, model_path: str):
    """The data a trained student's held-out windows come from: its own training config
    (``--config`` only to point at the data), with --root / --tokens applied and checked."""
    from xtinyhar.config import config_from_dict

    raw = payload["config"]
    if getattr(args, "root", None):
        raw = {**raw, "data": {**raw["data"], "root": str(Path(args.root).resolve())}}
    cfg = config_from_dict(raw, source=f"{model_path} (its training config)")
    cache = _cache_for(cfg, args)
    if cache.meta.get("config_hash") != payload.get("cache_hash"):
        raise XTinyHARError(f"{model_path}: trained on windows of another preprocessing config "
                            "than the data given; pass the --tokens it was trained with or none")
    return cfg, cache


def cmd_explain(args: argparse.Namespace) -> int:
    """IG, rollout, teacher-student similarity and deletion curves on held-out windows."""
    from xtinyhar.train.checkpoints import load_model
    from xtinyhar.xai.explain import explain

    student, payload = load_model(args.checkpoint, "student")
    if not hasattr(student, "tokenizer"):
        raise XTinyHARError(f"{args.checkpoint}: explain needs the Inertial Transformer (attention maps); "
                            f"this is a {payload['model_config'].get('arch')} baseline")
    if args.config:
        _load_cfg(args)      # validates the file; the model's own config defines the windows
    _, cache = _student_data(args, payload, args.checkpoint)
    teacher = compare = None
    labels = ("distilled student" if payload.get("distilled") else "student", "comparison")
    if args.teacher:
        teacher, t_payload = load_model(args.teacher, "teacher")
        if (sorted(t_payload["train_subjects"]) != sorted(payload["train_subjects"])
                or t_payload.get("cache_hash") != payload.get("cache_hash")):
            raise XTinyHARError(f"{args.teacher}: trained on other subjects or windows than {args.checkpoint}")
    if args.max_windows < 1 or args.steps < 1:
        raise XTinyHARError("--max-windows and --steps must be >= 1")
    if args.compare:
        compare, c_payload = load_model(args.compare, "student")
        if not hasattr(compare, "tokenizer"):
            raise XTinyHARError(f"{args.compare}: a baseline has no attention maps to compare")
        if (sorted(c_payload["train_subjects"]) != sorted(payload["train_subjects"])
                or c_payload.get("cache_hash") != payload.get("cache_hash")):
            raise XTinyHARError(f"{args.compare}: trained on other subjects or windows than {args.checkpoint}")
        labels = (labels[0], "distilled student" if c_payload.get("distilled") else "student without KD")
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    summary = explain(student, payload, cache, args.out, teacher=teacher, compare=compare,
                      labels_of=labels, classes=classes, max_windows=args.max_windows,
                      steps=args.steps, baseline_kind=args.baseline)
    gap = summary["ig_completeness_relative_gap"]
    print(f"{summary['windows']} held-out windows (subjects {summary['held_out_subjects']}); IG "
          f"{args.steps} steps vs {args.baseline} baseline, completeness gap median {gap['median']:.1e}, "
          f"max {gap['max']:.1e}")
    for name, value in summary.get("similarity", {}).items():
        print(f"attention similarity to the teacher, {name}: {value:.3f}")
    print("deletion AUC (lower = more faithful): " + ", ".join(
        f"{k} {v:.3f}" for k, v in summary["deletion_auc"].items()))
    print(f"wrote {Path(args.out)}/")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """LaTeX tables and PNG figures from finished `cv` run folders."""
    from xtinyhar.report import write_report

    written = write_report(args.run or [], args.out, labels=args.label, level=args.level,
                           edge=args.edge, accuracy=args.accuracy, validation=args.validation,
                           ablation=args.ablation)
    for path in written:
        print(path)
    return 0


def _add_common(parser: argparse.ArgumentParser, tokens: bool = True) -> None:
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/utd_mhad.yaml")
    parser.add_argument("--dataset", choices=DATASETS, help="overrides data.dataset")
    parser.add_argument("--root", help="dataset folder; overrides data.root")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key, e.g. --set model.student.arch=cnn1d (repeatable)")
    if tokens:
        parser.add_argument("--tokens", help="token cache from `xtinyhar prepare` (default: build in memory)")


def _add_split(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=PROTOCOLS,
                        help="split protocol (default: standard; own data: auto, i.e. its "
                             "predefined split if it has one, else k-fold)")
    parser.add_argument("--fold", type=int, default=0, help="which fold of the protocol (default 0)")


def _add_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", metavar="HOST:PORT",
                        help="run the folds as tasks on this Ray cluster (default: env RAY_ADDRESS, "
                             "else this machine; 'local' starts a private Ray instance here); "
                             "needs the ray extra (docs/cluster.md)")


EXAMPLES = {
    "prepare": ["xtinyhar prepare --config configs/utd_mhad.yaml --out data_cache/utd_tokens.npz"],
    "train-teacher": ["xtinyhar train-teacher --config configs/utd_mhad.yaml --tokens data_cache/utd_tokens.npz "
                      "--out runs/teacher_utd.pt"],
    "train-student": ["xtinyhar train-student --config configs/utd_mhad.yaml --tokens data_cache/utd_tokens.npz "
                      "--teacher runs/teacher_utd.pt --out runs/student_utd.pt"],
    "cv": ["xtinyhar cv --config configs/utd_mhad.yaml --tokens data_cache/utd_tokens.npz --out runs/utd_kfold",
           "xtinyhar cv --config configs/utd_mhad.yaml --protocol standard --no-kd --set model.student.arch=cnn1d "
           "--out runs/cnn_standard"],
    "ablate": ["xtinyhar ablate --config configs/utd_mhad.yaml --study configs/ablations/utd_mhad.yaml "
               "--tokens data_cache/utd_tokens.npz --out runs/ablate_utd --jobs 2",
               "xtinyhar ablate --config configs/utd_mhad.yaml --study configs/ablations/utd_mhad.yaml "
               "--tokens data_cache/utd_tokens.npz --out runs/ablate_utd --jobs 2 --address 10.0.0.1:6379"],
    "profile": ["xtinyhar profile --config configs/utd_mhad.yaml --latency",
                "xtinyhar profile --checkpoint runs/utd_kfold/folds/0/student.pt",
                "xtinyhar profile --model exports/student.onnx exports/student_int8.onnx --input recording.csv"],
    "export": ["xtinyhar export --checkpoint runs/utd_kfold/folds/0/student.pt --out exports/student.onnx --int8",
               "xtinyhar export --checkpoint runs/utd_kfold/folds/0/student.pt --format tflite --out exports/student.tflite"],
    "stream": ["xtinyhar stream --model exports/sliding_student.onnx --input recording.csv --stride 25"],
    "predict": ["xtinyhar predict --model exports/student.onnx --input recordings/ --out predictions.csv"],
    "explain": ["xtinyhar explain --checkpoint runs/utd_kfold/folds/0/student.pt --teacher runs/utd_kfold/folds/0/teacher.pt "
                "--out xai_outputs/fold0"],
    "report": ["xtinyhar report --run runs/utd_kfold --out reports/kfold",
               "xtinyhar report --ablation runs/ablate_utd --out reports/ablation"],
}
"""One to three example command lines per subcommand, shown at the end of its --help
(tests/test_cli.py parses each one)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xtinyhar", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"xtinyhar {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    prep = sub.add_parser("prepare", help="build the token cache (.npz) from a dataset")
    _add_common(prep, tokens=False)
    prep.add_argument("--out", required=True, help="token cache file to write, e.g. data_cache/utd_tokens.npz")
    prep.add_argument("--skip-bad", action="store_true",
                      help="skip unreadable or inconsistent trials with a warning instead of failing")
    prep.set_defaults(func=cmd_prepare)

    teach = sub.add_parser("train-teacher", help="train the skeleton + IMU teacher on one split")
    _add_common(teach)
    _add_split(teach)
    teach.add_argument("--out", required=True, help="checkpoint file to write, e.g. runs/teacher_utd.pt")
    teach.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from its last finished epoch (<out>.fit/)")
    teach.set_defaults(func=cmd_train_teacher)

    stud = sub.add_parser("train-student", help="train the IMU-only student, distilled from a teacher")
    _add_common(stud)
    _add_split(stud)
    stud.add_argument("--teacher", help="teacher checkpoint from train-teacher (same split)")
    stud.add_argument("--no-kd", action="store_true", help="train without distillation")
    stud.add_argument("--out", required=True, help="checkpoint file to write, e.g. runs/student_utd.pt")
    stud.add_argument("--resume", action="store_true",
                      help="continue an interrupted run from its last finished epoch (<out>.fit/)")
    stud.set_defaults(func=cmd_train_student)

    cv = sub.add_parser("cv", help="subject-independent cross-validation of teacher + student")
    _add_common(cv)
    cv.add_argument("--protocol", choices=PROTOCOLS,
                    help="default: eval.protocol of the config; 'validation' holds out standard "
                         "training subjects in turn and never uses the test subjects")
    cv.add_argument("--out", required=True, help="run folder to write, e.g. runs/utd_kfold")
    cv.add_argument("--resume", action="store_true", help="skip finished folds, continue the rest")
    cv.add_argument("--no-kd", action="store_true", help="student without teacher (KD ablation)")
    cv.add_argument("--max-folds", type=int, help="run only the first N folds (quick checks)")
    cv.add_argument("--jobs", type=int, default=1,
                    help="models trained at once (a fold's teacher and student are separate "
                         "tasks), each on train.threads // jobs threads (default 1; 2 on a 2-core "
                         "machine is faster: small models use threads poorly)")
    _add_address(cv)
    cv.set_defaults(func=cmd_cv)

    abl = sub.add_parser("ablate", help="an ablation study: variants of a config under the same folds "
                                        "and seeds, with paired differences to the reference")
    _add_common(abl)
    abl.add_argument("--study", required=True, help="study file, e.g. configs/ablations/utd_mhad.yaml")
    abl.add_argument("--out", required=True,
                     help="study folder to write: one cv run folder per variant and seed, and ablation.json")
    abl.add_argument("--protocol", choices=PROTOCOLS,
                     help="default: the study's protocol, else eval.protocol of the config")
    abl.add_argument("--seeds", type=int, nargs="+", help="default: the study's seeds, else train.seed")
    abl.add_argument("--variants", nargs="+", metavar="NAME",
                     help="run and tabulate only these variants of the study (its reference "
                          "always included); default: all")
    abl.add_argument("--jobs", type=int, default=1,
                     help="models trained at once, over all runs of the study (as cv --jobs)")
    _add_address(abl)
    abl.add_argument("--resume", action="store_true",
                     help="skip finished runs, continue the others (finished folds kept)")
    abl.set_defaults(func=cmd_ablate)

    prof = sub.add_parser("profile", help="parameters, size and FLOPs of the models; latency of "
                                          "exported files on this machine")
    prof.add_argument("--config", help="build untrained models from this config")
    prof.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    prof.add_argument("--dataset", choices=DATASETS)
    prof.add_argument("--checkpoint", nargs="+", help="checkpoints (.pt) to profile instead")
    prof.add_argument("--model", nargs="+",
                      help="exported .onnx / .tflite files to time with the device runtime instead "
                           "(numpy and onnxruntime only): size, HarModel.predict and bare graph latency")
    prof.add_argument("--n-classes", type=int, help="number of classes, with --config (default 27)")
    prof.add_argument("--latency", action="store_true",
                      help="also peak memory, file sizes and batch-1 latency (PyTorch eager, ONNX Runtime fp32/int8, "
                           "TFLite fp32/int8 when the tflite extra is installed)")
    prof.add_argument("--runs", type=int, help="timed calls per latency (default 1000)")
    prof.add_argument("--n-joints", type=int, help="number of skeleton joints, with --config (default 20)")
    prof.add_argument("--input", help="with --model: a CSV recording (acc x,y,z in g, gyro x,y,z in deg/s) "
                                      "whose first window is timed (default: a still window)")
    prof.add_argument("--warmup", type=int, help="with --model: untimed calls first (default 100)")
    prof.add_argument("--threads", type=int, help="with --model: threads per model (default 1)")
    prof.set_defaults(func=cmd_profile)
    export = sub.add_parser("export", help="export a student to ONNX (+ int8) with parity checks")
    export.add_argument("--checkpoint", required=True, help="student checkpoint, e.g. runs/utd/folds/0/student.pt")
    export.add_argument("--format", choices=("onnx", "tflite"), default="onnx",
                        help="onnx (default) or tflite (needs the optional extra: pip install -e '.[tflite]')")
    export.add_argument("--out", required=True,
                        help="model file to write, e.g. exports/xtinyhar_student.onnx (or .tflite), "
                             "with its <out>.json sidecar")
    export.add_argument("--int8", action="store_true",
                        help="also write <out>_int8: ONNX static int8 calibrated on training subjects, "
                             "or TFLite dynamic-range int8")
    export.add_argument("--root", help="dataset folder, if not where the checkpoint was trained")
    export.add_argument("--tokens", help="token cache the model was trained with (default: build)")
    export.add_argument("--tolerance", type=float, default=1e-4, help="max |logit difference| (fp32)")
    export.add_argument("--int8-min-agreement", type=float, default=0.95, metavar="FRACTION",
                        help="refuse the int8 file when it gives the fp32 file's class on fewer of the "
                             "held-out windows, measured on this machine (default 0.95)")
    export.add_argument("--int8-max-drop", type=float, default=0.02, metavar="FRACTION",
                        help="refuse the int8 file when its held-out trial accuracy is lower than fp32's "
                             "by more than this (default 0.02)")
    export.set_defaults(func=cmd_export)

    stream = sub.add_parser("stream", help="replay a recorded trial through the device runtime")
    stream.add_argument("--model", required=True, help="exported model, e.g. exports/xtinyhar_student.onnx")
    stream.add_argument("--input", required=True,
                        help="CSV of IMU samples (acc g, gyro deg/s; header optional) or a UTD-MHAD *_inertial.mat")
    stream.add_argument("--stride", type=int, help="samples between predictions (default: the model's)")
    stream.add_argument("--pad", action="store_true",
                        help="pad a recording shorter than the window by repeating its last sample "
                             "(the rule training uses for short trials)")
    stream.add_argument("--chunk", type=int, default=5, help="samples per arriving packet (default 5)")
    stream.set_defaults(func=cmd_stream)
    pred = sub.add_parser("predict", help="classify recordings with an exported .onnx/.tflite model")
    pred.add_argument("--model", required=True, help="exported model, e.g. exports/xtinyhar_student.onnx")
    pred.add_argument("--input", required=True,
                      help="a recording (CSV with a header of channel names, or *_inertial.mat) "
                           "or a folder of them (manifest.csv is skipped)")
    pred.add_argument("--out", help="CSV file to write: one row per window and per recording (window 'all')")
    pred.add_argument("--hz", type=float,
                      help="sampling rate of the input, resampled to the model's (default: the model's)")
    pred.set_defaults(func=cmd_predict)
    expl = sub.add_parser("explain", help="IG, attention rollout, teacher-student similarity, deletion curves")
    expl.add_argument("--checkpoint", required=True, help="student checkpoint (.pt)")
    expl.add_argument("--teacher", help="teacher checkpoint of the same fold (for attention similarity)")
    expl.add_argument("--compare", help="another student checkpoint of the same fold, e.g. trained with --no-kd")
    expl.add_argument("--config", help="config file (checked; the windows follow the model's own config)")
    expl.add_argument("--set", action="append", metavar="KEY=VALUE", help=argparse.SUPPRESS)
    expl.add_argument("--root", help="dataset folder, if not where the model was trained")
    expl.add_argument("--tokens", help="token cache the model was trained with (default: build)")
    expl.add_argument("--out", required=True, help="folder to write, e.g. xai_outputs/")
    expl.add_argument("--classes", help="comma-separated class names to explain (default: all)")
    expl.add_argument("--max-windows", type=int, default=200, help="held-out windows to use (default 200)")
    expl.add_argument("--steps", type=int, default=64, help="IG path steps (default 64)")
    expl.add_argument("--baseline", choices=("mean", "zero", "blur"), default="mean",
                      help="IG and deletion baseline (default: training mean)")
    expl.set_defaults(func=cmd_explain)
    rep = sub.add_parser("report", help="LaTeX tables and PNG figures from finished cv runs")
    rep.add_argument("--run", action="append",
                     help="a run folder written by `xtinyhar cv` (repeatable)")
    rep.add_argument("--edge", help="a bench_edge.json (benchmarks/bench_edge.py) to write as edge.tex")
    rep.add_argument("--accuracy", help="a bench_accuracy.json (benchmarks/bench_accuracy.py) to write as accuracy.tex")
    rep.add_argument("--validation", action="append",
                     help="a benchmarks/bench_validation.py run folder (repeatable): one row each of validation.tex")
    rep.add_argument("--ablation", action="append",
                     help="an `xtinyhar ablate` study folder (or its ablation.json): ablation.tex and "
                          "ablation.png; repeat it for parts of one study (--variants runs): one merged table")
    rep.add_argument("--label", action="append", help="a name for each --run in tables (default: folder name)")
    rep.add_argument("--out", required=True, help="folder to write, e.g. reports/")
    rep.add_argument("--level", choices=("trial", "window"), default="trial",
                     help="score trials (a trial = mean of its windows) or windows (default trial)")
    rep.set_defaults(func=cmd_report)
    for name, command in sub.choices.items():
        command.formatter_class = argparse.RawDescriptionHelpFormatter
        command.epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("xtinyhar").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except XTinyHARError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # an output path we cannot write: permissions, a file where a folder goes, a full disk
        if args.verbose:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
