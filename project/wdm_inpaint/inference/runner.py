"""Folder-in, folder-out inference that one bad case cannot sink.

Every case of the data folder gets exactly one ``<ID>-t1n-inference.nii.gz`` in the output folder, written
under a temporary name and renamed. A case the model cannot handle is filled classically (harmonic fill) and
counted as a fallback; only a case whose voided scan cannot be read gets no output. Nothing but the outputs
goes into the output folder: the run record goes to the log folder.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from wdm_inpaint.data.cases import PREDICTION_SUFFIX, Case, CaseError, discover_cases, prediction_file_name
from wdm_inpaint.data.intensity import INTENSITY_FLOOR
from wdm_inpaint.inference.coverage import fill_unseen
from wdm_inpaint.inference.engine import InferenceEngine, PreparedVolume, classical_inpaint
from wdm_inpaint.inference.input_folder import require_cases
from wdm_inpaint.inference.inputs import CaseInputs, read_case_inputs
from wdm_inpaint.inference.output_folder import OutputRun, output_problem, written_meanwhile
from wdm_inpaint.inference.records import FALLBACK_FILL, CaseRecord, RunSummary, default_log_dir, write_run_record
from wdm_inpaint.inference.stop_signals import RunInterrupted
from wdm_inpaint.io.nifti import NiftiError, load_image, write_like
from wdm_inpaint.seeding import case_seed

logger = logging.getLogger(__name__)

OUTPUT_SUFFIX = PREDICTION_SUFFIX
"""Output file name suffix of the challenge: ``<ID>-t1n-inference.nii.gz``."""

def output_path(output_folder: Path, case_id: str) -> Path:
    """The challenge's output file of a case."""
    return output_folder / prediction_file_name(case_id)


def select_cases(
    cases: list[Case], beg: int | None = None, end: int | None = None, shard: tuple[int, int] | None = None
) -> list[Case]:
    """Cases ``[beg:end]`` of the sorted list, then every ``n``-th from ``i`` for ``shard=(i, n)``.

    Raises:
        ValueError: for a shard index outside ``0..n-1``.
    """
    chosen = cases[beg:end]
    if shard is not None:
        index, count = shard
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"shard {index}/{count} is invalid: need 0 <= i < n")
        chosen = chosen[index::count]
    return chosen


def _fallback_output(inputs: CaseInputs) -> np.ndarray:
    voided32 = inputs.voided.astype(np.float32)
    if inputs.passthrough:
        return np.where(inputs.mask, np.maximum(voided32, INTENSITY_FLOOR), voided32)
    return classical_inpaint(FALLBACK_FILL, inputs.voided, inputs.mask)


def _check_output(out: np.ndarray, inputs: CaseInputs) -> None:
    if out.shape != inputs.voided.shape:
        raise RuntimeError(f"output shape {out.shape} differs from the input's {inputs.voided.shape}")
    if not np.isfinite(out).all():
        raise RuntimeError("output holds NaN or Inf values")
    known = ~inputs.mask
    if not np.array_equal(out[known], inputs.voided.astype(np.float32)[known]):
        raise RuntimeError("output changed voxels outside the mask")
    if (out[inputs.mask] < INTENSITY_FLOOR).any():
        raise RuntimeError("output has negative values inside the mask")


@dataclass
class LoadedCase:
    """A case after the first stage (reader thread): read, checked and, if the model may run, prepared."""

    inputs: CaseInputs
    prepared: PreparedVolume | None = None
    prepare_error: Exception | None = None


@dataclass
class _SampledCase:
    """A case after the second stage: the model's output (or the reason it has none)."""

    loaded: LoadedCase
    record: CaseRecord
    start: float
    model_output: torch.Tensor | None = None
    ready: np.ndarray | None = None


def load_case(engine: InferenceEngine, case: Case) -> LoadedCase | CaseError:
    """Stage 1 (CPU): read and check a case and bring it to the model grid; a read error is returned."""
    try:
        inputs = read_case_inputs(case)
    except CaseError as exc:
        return exc
    return prepare_case(engine, inputs)


def prepare_case(engine: InferenceEngine, inputs: CaseInputs) -> LoadedCase:
    """Bring a read case to the model grid unless it must be filled classically; a failure is kept, not raised."""
    loaded = LoadedCase(inputs)
    if inputs.fallback_reason is None:
        try:
            loaded.prepared = engine.prepare(inputs.voided, inputs.mask, inputs.affine)
        except Exception as exc:  # noqa: BLE001 - any failure falls back to the classical fill
            loaded.prepare_error = exc
    return loaded


def _model_failed(record: CaseRecord, case_id: str, exc: Exception) -> None:
    logger.error("case %s: the model failed (%s); using the %s fill", case_id, exc, FALLBACK_FILL,
                 exc_info=(type(exc), exc, exc.__traceback__))
    record.reason = f"model failed: {type(exc).__name__}: {exc}"


def sample_case(engine: InferenceEngine, loaded: LoadedCase) -> _SampledCase:
    """Stage 2 (the model's device): sample a loaded case; failures are recorded for the classical fallback."""
    inputs = loaded.inputs
    job = _SampledCase(loaded, CaseRecord(inputs.case_id, "model", notes=list(inputs.notes)), time.perf_counter())
    for note in inputs.notes:
        logger.warning("case %s: %s", inputs.case_id, note)
    if inputs.fallback_reason is not None:
        job.record.reason = inputs.fallback_reason
    elif loaded.prepare_error is not None:
        _model_failed(job.record, inputs.case_id, loaded.prepare_error)
    elif loaded.prepared is not None and loaded.prepared.result is not None:
        job.ready = loaded.prepared.result
    elif loaded.prepared is not None:
        try:
            seed = case_seed(engine.options.seed, inputs.case_id)
            job.model_output, job.record.device = engine.sample_or_retry_on_cpu(loaded.prepared, seed, inputs.case_id)
        except Exception as exc:  # noqa: BLE001 - any model failure falls back to the classical fill
            _model_failed(job.record, inputs.case_id, exc)
    return job


def finish_case(engine: InferenceEngine, job: _SampledCase, out_path: Path) -> CaseRecord:
    """Stage 3 (CPU): restore, check (or fall back to the classical fill) and write the output atomically."""
    inputs, record = job.loaded.inputs, job.record
    out = job.ready
    if out is None and job.model_output is not None and job.loaded.prepared is not None:
        try:
            out = engine.finish(job.loaded.prepared, job.model_output)
            out, partial = fill_unseen(out, job.loaded.prepared, FALLBACK_FILL)  # inference/coverage.py
            if partial is not None:
                record.status, record.reason = "fallback", partial
        except Exception as exc:  # noqa: BLE001 - any model failure falls back to the classical fill
            _model_failed(record, inputs.case_id, exc)
    if out is not None:
        try:
            _check_output(out, inputs)
        except Exception as exc:  # noqa: BLE001 - a wrong output falls back to the classical fill
            _model_failed(record, inputs.case_id, exc)
            out = None
    if out is None:
        if inputs.fallback_reason is not None:
            logger.warning("case %s: %s; using the %s fill", inputs.case_id, inputs.fallback_reason, FALLBACK_FILL)
        record.status = "fallback"
        out = _fallback_output(inputs)
    write_like(out_path, out, inputs.reference)
    record.output = str(out_path)
    record.seconds = time.perf_counter() - job.start
    return record


def process_case(engine: InferenceEngine, inputs: CaseInputs, out_path: Path) -> CaseRecord:
    """Inpaint one read case and write its output, the three stages in a row (no threads)."""
    return finish_case(engine, sample_case(engine, prepare_case(engine, inputs)), out_path)


def _finish_or_fail(engine: InferenceEngine, job: _SampledCase, out_path: Path) -> CaseRecord:
    try:
        return finish_case(engine, job, out_path)
    except Exception as exc:  # noqa: BLE001 - record and go on with the next case
        logger.exception("case %s: could not write an output: %s", job.record.case_id, exc)
        return CaseRecord(job.record.case_id, "failed", None, reason=f"{type(exc).__name__}: {exc}")


def run_folder(
    engine: InferenceEngine,
    data_folder: str | os.PathLike[str],
    output_folder: str | os.PathLike[str],
    log_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    beg: int | None = None,
    end: int | None = None,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
) -> RunSummary:
    """Inpaint every case of ``data_folder`` into ``output_folder``.

    Args:
        engine: the loaded :class:`~wdm_inpaint.inference.engine.InferenceEngine` (an ``Inpainter`` is one).
        data_folder: challenge layout (``<ID>/<ID>-t1n-voided.nii.gz`` and ``<ID>/<ID>-mask.nii.gz``); read only.
        output_folder: receives exactly one ``<ID>-t1n-inference.nii.gz`` per case and nothing else.
        log_dir: run record folder (default: :func:`default_log_dir`); never inside ``output_folder``.
        overwrite: redo cases whose output already exists (default: skip them).
        beg: first case index (sorted by ID).
        end: one past the last case index.
        shard: ``(i, n)``: process every n-th case starting at i (several processes or GPUs).
        progress: show a progress bar over the cases.

    Raises:
        FileNotFoundError: if ``data_folder`` does not exist.
        ValueError: if ``log_dir`` lies inside ``output_folder``.
        NoCasesError: if ``data_folder`` holds no case folder.
        OutputFolderError: if ``output_folder`` is a file, cannot be created or is not writable.
        RunInterrupted: after SIGTERM/SIGINT, once the file being written is finished and the record written.
    """
    start = time.perf_counter()
    data = Path(data_folder)
    out_dir = Path(output_folder)
    if not data.is_dir():
        raise FileNotFoundError(f"data folder not found: {data}")
    logs = Path(log_dir) if log_dir is not None else default_log_dir(out_dir)
    if logs.resolve().is_relative_to(out_dir.resolve()):
        raise ValueError(f"the log folder {logs} lies inside the output folder {out_dir}: choose another --log-dir")
    with OutputRun(out_dir) as run:  # locks the folder, handles SIGTERM/SIGINT (see inference/output_folder.py)
        slots: list[CaseRecord | Future] = []
        try:
            scan = discover_cases(data)
            for problem in scan.problems:
                logger.warning("%s", problem)
            require_cases(scan, data)
            cases = select_cases(scan.cases, beg, end, shard)
            logger.info("%d case(s) to process in %s", len(cases), data)

            todo: list[Case] = []
            seen: dict[str, os.stat_result | None] = {}
            for case in cases:
                target = output_path(out_dir, case.id)
                if not overwrite and output_problem(target, case) is None:
                    slots.append(CaseRecord(case.id, "skipped", str(target)))
                else:
                    todo.append(case)
                    seen[case.id] = target.stat() if target.is_file() else None

            # three stages overlap: the reader prepares case i+1 and the writer finishes case i-1 while case i samples
            with ThreadPoolExecutor(max_workers=1) as reader, ThreadPoolExecutor(max_workers=1) as writer:
                pending: Future | None = reader.submit(load_case, engine, todo[0]) if todo else None
                writing: Future | None = None
                for i, case in enumerate(tqdm(todo, desc="cases", unit="case", disable=not progress)):
                    loaded = pending.result() if pending is not None else load_case(engine, case)
                    pending = reader.submit(load_case, engine, todo[i + 1]) if i + 1 < len(todo) else None
                    target = output_path(out_dir, case.id)
                    if not overwrite and written_meanwhile(target, seen[case.id]):
                        logger.info("case %s: written by another run meanwhile; skipped", case.id)
                        slots.append(CaseRecord(case.id, "skipped", str(target)))
                        continue
                    if isinstance(loaded, CaseError):
                        logger.error("case %s: %s; no output written", case.id, loaded)
                        slots.append(CaseRecord(case.id, "failed", None, reason=str(loaded)))
                        continue
                    job = sample_case(engine, loaded)
                    if writing is not None:
                        writing.result()  # at most one finished volume waits in memory
                    writing = writer.submit(_finish_or_fail, engine, job, target)
                    slots.append(writing)
        except RunInterrupted as exc:  # the writer has finished its file; the case being sampled is dropped
            run.stopped(exc)
        records = [slot.result() if isinstance(slot, Future) else slot for slot in slots]
        method = f"the {engine.options.sampler} fill" if engine.options.classical else "the model"
        summary = RunSummary(records, time.perf_counter() - start, logs, method, status=run.status)
        arguments = dict(overwrite=overwrite, beg=beg, end=end, shard=shard)
        with run.signals.critical():
            write_run_record(summary, engine.describe(), data, out_dir, logs, arguments)
    return summary



__all__ = [
    "OUTPUT_SUFFIX",
    "LoadedCase",
    "load_case",
    "output_path",
    "process_case",
    "run_folder",
    "select_cases",
]
