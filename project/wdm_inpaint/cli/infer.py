"""``wdm-inpaint infer``: inpaint every case of a challenge-layout folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from wdm_inpaint.inference.acceleration import PRECISIONS
from wdm_inpaint.inference.options import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLER_CHOICES
from wdm_inpaint.inference.records import EXIT_FAILED, EXIT_FALLBACK


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= i < n")
    return index, count


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "infer",
        help="inpaint every case of a folder (challenge layout) into one <ID>-t1n-inference.nii.gz each",
        description="Reads DATA/<ID>/<ID>-t1n-voided.nii.gz and DATA/<ID>/<ID>-mask.nii.gz and writes exactly "
        "one OUT/<ID>-t1n-inference.nii.gz per case. Cases whose output exists are skipped (--overwrite to redo). "
        "A case the model cannot handle gets the classical harmonic fill and is counted as a fallback. Exit code: "
        f"0 all cases by the model (or skipped), {EXIT_FALLBACK} some used the fallback, {EXIT_FAILED} some got no "
        "output.",
    )
    p.add_argument("-i", "--input", required=True, type=Path, help="data folder of case folders (read only)")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder (receives only the outputs)")
    p.add_argument("-m", "--checkpoint", type=Path, default=None,
                   help="checkpoint file (default: $WDM_INPAINT_CHECKPOINT, else the bundled checkpoint)")
    p.add_argument("--sampler", choices=SAMPLER_CHOICES, default=DEFAULT_SAMPLER,
                   help=f"diffusion sampler, or a classical fill without a model (default: {DEFAULT_SAMPLER})")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"network calls of the sampler (default: {DEFAULT_STEPS})")
    p.add_argument("--samples", type=int, default=1, help="samples averaged inside the mask (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="run seed; each case derives its own (default: 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA if visible), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--known-region", choices=("upstream", "matched"), default="upstream",
                   help="known tissue seen during sampling: clean (upstream) or scaled as in training (matched)")
    crop = p.add_mutually_exclusive_group()
    crop.add_argument("--crop", dest="crop", action="store_true", default=None,
                      help="sample only a box around the mask")
    crop.add_argument("--no-crop", dest="crop", action="store_false", help="sample the whole volume")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="network precision: auto = bfloat16 autocast on CUDA, float32 on CPU (default: auto)")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--channels-last", dest="channels_last", action="store_true", default=None,
                        help="channels-last 3-D memory format (default: on CUDA only)")
    layout.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="plain contiguous memory format")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (pays over many cases; each new crop size compiles again)")
    p.add_argument("--beg", type=int, default=None, help="first case index (sorted by ID)")
    p.add_argument("--end", type=int, default=None, help="one past the last case index")
    p.add_argument("--shard", type=_shard, default=None, help="i/n: process every n-th case from i")
    p.add_argument("--overwrite", action="store_true", help="redo cases whose output exists")
    p.add_argument("--log-dir", type=Path, default=None,
                   help="run record folder (default: OUT-logs next to OUT; never inside OUT)")
    p.add_argument("--fallback-ok", action="store_true",
                   help=f"exit 0 instead of {EXIT_FALLBACK} when some cases used the fallback")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wdm_inpaint.inference.inpainter import Inpainter

    log = logging.getLogger("wdm_inpaint.cli.infer")
    inpainter = Inpainter.from_checkpoint(
        args.checkpoint,
        device=args.device,
        sampler=args.sampler,
        steps=args.steps,
        samples=args.samples,
        seed=args.seed,
        known_region=args.known_region,
        crop=args.crop,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        progress=args.progress,
    )
    summary = inpainter.infer_batch(
        args.input,
        args.output,
        log_dir=args.log_dir,
        overwrite=args.overwrite,
        beg=args.beg,
        end=args.end,
        shard=args.shard,
        progress=args.progress,
    )
    print(summary.line())
    if summary.log_dir is not None:
        log.info("run record in %s", summary.log_dir)
    return summary.exit_code(args.fallback_ok)
