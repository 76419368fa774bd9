"""`surrogate` command line: generate, train, evaluate, merge, export, list.

Errors in the user's input (unknown problem or option, bad data, bad config) print one line
`surrogate: error: ...` and exit with status 2; there is no traceback. Every number has a
range, checked here (flags), in the config (`_config`) or by the problem (`__check_init__`);
an option given twice, a dataset too large for memory and an output path that is one of
the command's inputs are refused before anything is written.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ._resources import format_bytes, memory

_USER_ERRORS = (ValueError, OSError, TypeError)

# Sample indices and seeds go through JAX integers, 32-bit unless float64 is on: indices
# past 2**31 - 1 wrap (sample 2**32 + k is sample k again) and seed 2**32 + s is seed s.
MAX_SAMPLES = 2**31
MAX_SEED = 2**32 - 1
MAX_BATCH = 2**20
MAX_SIZE = 2**31 - 1  # one axis of an exported input


def _check_range(option: str, value: int, low: int, high: int, why: str = "") -> None:
    if not low <= value <= high:
        why = f" ({why})" if why else ""
        raise ValueError(f"{option} must be >= {low} and <= {high}{why}, got {value}")


def _one_line(error: BaseException) -> str:
    """The message on one line (some carry a numpy array's multi-line repr)."""
    return re.sub(r"\s*\n\s*", " ", str(error)).strip()


class _StoreOnce(argparse.Action):
    """`store`, refusing an option given twice (which value was meant?)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault(_GIVEN, {})
        if self.dest in given:
            parser.error(
                f"option {option_string} given twice ({given[self.dest]!r} and {values!r}); "
                "give it once"
            )
        given[self.dest] = values
        setattr(namespace, self.dest, values)


_GIVEN = "_options_given"


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other error of the command, and
    every option that takes a value refused when given twice."""

    def add_argument(self, *names, **kwargs):
        if names and names[0].startswith("-") and kwargs.get("action", "store") == "store":
            kwargs["action"] = _StoreOnce
        return super().add_argument(*names, **kwargs)

    def error(self, message: str):
        self.exit(2, f"surrogate: error: {message} (see {self.prog} --help)\n")


def _parse_options(extra: list[str]) -> dict[str, str]:
    """`--name value` pairs after the known arguments become problem options; an option
    given twice is refused (which value was meant?)."""
    options: dict[str, str] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or len(token) <= 2:
            raise ValueError(
                f"unexpected argument {token!r}; problem options look like --name value"
            )
        name = token[2:].replace("-", "_")
        if "=" in name:
            name, value = name.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(extra):
                raise ValueError(f"option --{name} needs a value")
            value = extra[i + 1]
            i += 2
        if name in options:
            raise ValueError(
                f"option --{name} given twice ({options[name]!r} and {value!r}); give it once"
            )
        options[name] = value
    return options


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard expects i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


def _shard_size(n: int, shard: tuple[int, int]) -> int:
    """Samples in shard i of n_shards: `np.array_split`'s sizes, without the array."""
    i, k = shard
    return n // k + (1 if i < n % k else 0)


def _dataset_bytes(problem, n: int) -> tuple[int, int]:
    """(bytes, values per sample) of the dataset of `n` samples of `problem`, from its
    variables and coordinate sizes, before anything is allocated (a lower bound: variables
    over a dimension without a coordinate are not counted)."""
    import math

    import numpy as np

    sizes = {name: int(np.size(c.values)) for name, c in problem.coords().items()}
    per_sample = 0
    for var in problem.variables().values():
        if all(d in sizes for d in var.dims):
            per_sample += math.prod(sizes[d] for d in var.dims)
    itemsize = 8 if problem.needs_x64 else 4
    return n * per_sample * itemsize, per_sample


def _check_fits(problem, n: int, what: str) -> None:
    """Refuse a dataset that cannot fit in memory, naming what it would need."""
    need, per_sample = _dataset_bytes(problem, n)
    have = memory()
    if have is not None and need > have:
        raise ValueError(
            f"{what}: {n} samples of {problem.name} ({per_sample} values of "
            f"{8 if problem.needs_x64 else 4} bytes each) need {format_bytes(need)} in "
            f"memory, more than this machine's {format_bytes(have)}; generate fewer "
            "samples, or in shards (--shard i/n) whose samples fit"
        )


def _check_out_file(out: str) -> None:
    if Path(out).is_dir():
        raise ValueError(f"--out {out} is a directory; give the netCDF file to write")


def cmd_generate(args, extra) -> int:
    from . import problems
    from .data import write_dataset
    from .problems import generate

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    _check_range("--seed", args.seed, 0, MAX_SEED, "JAX keeps 32 bits of a seed")
    _check_range("--batch-size", args.batch_size, 1, MAX_BATCH)
    _check_out_file(args.out)
    problem = problems.get(args.problem, **_parse_options(extra))
    shard = _parse_shard(args.shard)
    # what it would take first (the memory), then what the indices allow
    if args.dask is not None or shard is None:
        _check_fits(problem, args.n, f"--n {args.n}")
    else:
        _check_fits(problem, _shard_size(args.n, shard), f"shard {args.shard} of --n {args.n}")
    _check_range("--n", args.n, 1, MAX_SAMPLES, "sample indices are 32-bit JAX integers")
    if args.dask is not None:
        return _generate_dask(args, problem)
    for flag in ("shards", "shard_dir", "keep_shards"):
        if getattr(args, flag) not in (None, False):
            raise ValueError(f"--{flag.replace('_', '-')} needs --dask")
    if shard is not None:
        from .hpc import generate_shard

        if _shard_size(args.n, shard) == 0:
            raise ValueError(f"shard {args.shard} of {args.n} samples is empty")
        path, generated = generate_shard(
            problem,
            args.n,
            seed=args.seed,
            shard=shard[0],
            n_shards=shard[1],
            out=args.out,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
        if generated:
            print(f"wrote {path}: shard {args.shard} of {args.n} samples of {problem.name}")
        else:
            print(f"skipped {path}: complete shard {args.shard} exists (--overwrite to redo)")
        return 0
    import numpy as np

    ds = generate(
        problem,
        seed=args.seed,
        indices=np.arange(args.n),
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    path = write_dataset(ds, args.out)
    print(f"wrote {path}: {ds.sizes['sample']} sample(s) of {problem.name}")
    return 0


_SHARD_NAME = re.compile(r"shard-\d{5}-of-\d{5}\.nc")


def _generate_dask(args, problem) -> int:
    if args.shard is not None:
        raise ValueError("--dask runs all shards itself; drop --shard i/n")
    if args.shards is not None and not 1 <= args.shards <= args.n:
        raise ValueError(f"--shards must be between 1 and --n ({args.n}), got {args.shards}")
    from ._atomic import same_file

    out = Path(args.out)
    shard_dir = Path(args.shard_dir) if args.shard_dir else out.with_name(out.name + ".shards")
    if same_file(out, shard_dir) or (
        same_file(out.parent, shard_dir) and _SHARD_NAME.fullmatch(out.name)
    ):
        raise ValueError(
            f"--out {out} is a shard file of --shard-dir {shard_dir}, which the merge reads; "
            "choose another output path"
        )
    from .hpc import dask_client, generate_sharded, require_distributed

    try:
        require_distributed()
    except ImportError as e:
        raise ValueError(str(e)) from None

    def report(i, n, generated):
        if not args.quiet:
            print(f"  shard {i}/{n} " + ("generated" if generated else "skipped (complete)"))

    with dask_client(args.dask) as client:
        path = generate_sharded(
            problem,
            args.n,
            seed=args.seed,
            out=args.out,
            client=client,
            n_shards=args.shards,
            shard_dir=args.shard_dir,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            keep_shards=args.keep_shards,
            on_shard=report,
        )
    print(f"wrote {path}: {args.n} sample(s) of {problem.name}")
    return 0


def cmd_merge(args, extra) -> int:
    from .hpc import merge_shards

    _check_out_file(args.out)
    merged = merge_shards(args.shards, args.out)  # refuses an --out that is a shard
    print(
        f"wrote {args.out}: {merged.sizes['sample']} sample(s) of "
        f"{merged.attrs.get('problem')} from {len(args.shards)} shard(s)"
    )
    return 0


def cmd_export(args, extra) -> int:
    from . import load
    from ._atomic import refuse_overwriting_inputs
    from .export import build_c_library, export_model
    from .export._export import ARTIFACT, METADATA

    try:
        shape = tuple(int(v) for v in args.input_shape.split(","))
    except ValueError:
        raise ValueError(
            f"--input-shape expects comma-separated sizes (e.g. 1,256), got {args.input_shape!r}"
        ) from None
    for size in shape:
        _check_range("--input-shape size", size, 1, MAX_SIZE)
    if args.batch is not None:
        _check_range("--batch", args.batch, 1, MAX_BATCH)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give the folder to write the export into")
    written = [ARTIFACT, METADATA] + (["libsurrogate.so", "surrogate.h"] if args.build_c else [])
    refuse_overwriting_inputs(
        {"--out": out, **{f"--out {name}": out / name for name in written}},
        {"model": args.model},
    )
    model = load(args.model)
    try:
        out = export_model(model, shape, args.out, batch=args.batch, source=args.model)
        print(f"wrote {out / ARTIFACT} and {out / METADATA}")
        if args.build_c:
            lib = build_c_library(out)
            print(f"wrote {lib} and {out / 'surrogate.h'}")
    except ImportError as e:  # flatbuffers (serialization) or cffi (C library) missing
        raise ValueError(str(e)) from None
    return 0


def cmd_train(args, extra) -> int:
    from ._config import load_config
    from ._train import train_from_config
    from .training import TrainingDiverged

    if extra:
        raise ValueError(f"unexpected argument(s) {extra}")
    if args.force and not args.resume:
        raise ValueError("--force goes with --resume (continue a checkpoint of another setup)")
    cfg = load_config(args.config)
    try:
        result = train_from_config(
            cfg, resume=args.resume, force=args.force, progress=not args.quiet
        )
    except TrainingDiverged as e:
        print(f"surrogate: error: {e}", file=sys.stderr)
        return 3
    print(
        f"model: {result['model']}\nhistory: {result['history']}\n"
        f"checkpoint: {result['checkpoint']}"
    )
    if "test_metrics" in result:
        print("test " + ", ".join(f"{k} {v:.4g}" for k, v in result["test_metrics"].items()))
    return 0


def cmd_evaluate(args, extra) -> int:
    import jax
    import numpy as np

    from . import load
    from ._atomic import refuse_overwriting_inputs, same_file
    from ._serialization import needs_x64, read_header
    from .data import read_dataset
    from .evaluation import evaluate_dataset, model_layout, plot_predictions, write_metrics

    if extra:
        raise ValueError(f"unexpected argument(s) {extra}")
    outputs = {k: v for k, v in (("--json", args.json), ("--plot", args.plot)) if v}
    refuse_overwriting_inputs(outputs, {"model": args.model, "data": args.data})
    if args.json and args.plot and same_file(args.json, args.plot):
        raise ValueError(f"--json and --plot are the same file {args.json}")
    if needs_x64(args.model) and not jax.config.jax_enable_x64:
        with jax.enable_x64(True):  # a model trained in float64 (stiff solves) runs in it
            return cmd_evaluate(args, extra)
    model = load(args.model)
    ds = read_dataset(args.data)
    layout = model_layout(read_header(args.model), ds)
    metrics, pred, data = evaluate_dataset(model, ds, layout)
    width = max(len(k) for k in metrics)
    what = ds.attrs.get("problem", ", ".join(layout.targets))
    grid = "x".join(str(n) for n in data.y.shape[2:]) or "scalar"
    print(f"{what}: {pred.shape[0]} samples, targets {', '.join(layout.targets)} on {grid}")
    for k, v in metrics.items():
        print(f"  {k:<{width}}  {v:.6g}")
    if args.json:
        write_metrics(args.json, metrics)
        print(f"metrics: {args.json}")
    if args.plot:
        dim = layout.target_dims[-1] if layout.target_dims else None
        coord = data.coords.get(dim) if dim else None
        coord = np.arange(data.y.shape[-1]) if coord is None else coord
        plot_predictions(args.plot, coord, data.x, pred, data.y, title=f"{what}: {args.model}")
        print(f"plot: {args.plot}")
    return 0


def cmd_list(args, extra) -> int:
    from . import problems
    from ._models import model_class, model_names
    from .problems import option_types, problem_class

    print("problems:")
    for name in problems.available():
        try:
            cls = problem_class(name)
        except ValueError as e:  # a broken plugin is listed with its error
            print(f"  {name:<16} ({e})")
            continue
        doc = ((cls.__doc__ or "").strip().splitlines() or [""])[0]
        opts = ", ".join(option_types(cls))
        print(f"  {name:<16} {doc}\n  {'':<16} options: {opts}")
    print("models:")
    for name in model_names():
        cls = model_class(name)
        doc = ((cls.__doc__ or "").strip().splitlines() or [""])[0]
        print(f"  {name:<16} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="surrogate", description="Surrogate models of physics.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser(
        "generate",
        help="generate a dataset with a problem's reference solver",
        description="Extra --name value pairs are the problem's options.",
        allow_abbrev=False,
    )
    g.add_argument("problem", help="a name of `surrogate list`, or package.module:Class")
    g.add_argument("--n", type=int, required=True, help="number of samples")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", required=True, help="netCDF file to write")
    g.add_argument(
        "--shard",
        help="i/n: write only shard i of n; a complete shard file already at --out is kept",
    )
    g.add_argument("--batch-size", type=int, default=32, help="samples solved at once")
    g.add_argument(
        "--overwrite", action="store_true", help="regenerate shards whose file is complete"
    )
    g.add_argument(
        "--dask",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run the shards as Dask tasks: local, local:N (workers) or a scheduler address",
    )
    g.add_argument("--shards", type=int, help="with --dask: number of shards (default: workers)")
    g.add_argument("--shard-dir", help="with --dask: folder of shard files (default OUT.shards)")
    g.add_argument("--keep-shards", action="store_true", help="with --dask: keep shard files")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=cmd_generate)
    t = sub.add_parser("train", help="train a surrogate from a TOML config")
    t.add_argument("config")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint (refused if its data, model or optimiser differ)",
    )
    t.add_argument(
        "--force", action="store_true", help="with --resume: continue even if they differ"
    )
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("evaluate", help="metrics of a model on a dataset")
    e.add_argument("model")
    e.add_argument("data")
    e.add_argument("--plot", help="PNG of predictions vs truth")
    e.add_argument("--json", help="write the metrics as JSON")
    e.set_defaults(func=cmd_evaluate)
    m = sub.add_parser("merge", help="join shard files into one dataset")
    m.add_argument("shards", nargs="+", metavar="SHARD.nc")
    m.add_argument("--out", required=True, help="netCDF file to write")
    m.set_defaults(func=cmd_merge)
    x = sub.add_parser("export", help="export a model for C/Fortran (jax.export + C ABI)")
    x.add_argument("model")
    x.add_argument("--input-shape", required=True, help="one sample's shape, e.g. 1,256")
    x.add_argument("--out", required=True, help="folder to write")
    x.add_argument("--batch", type=int, help="export a vmapped model taking this many samples")
    x.add_argument("--build-c", action="store_true", help="also build libsurrogate.so there")
    x.set_defaults(func=cmd_export)
    li = sub.add_parser("list", help="problems and models available")
    li.set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        vars(args).pop(_GIVEN, None)
        if extra and args.command != "generate":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # --help, or a one-line usage error
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args, extra)
    except _USER_ERRORS as e:
        print(f"surrogate: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (MemoryError, OverflowError) as e:  # a value that sizes something too large
        print(f"surrogate: error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("surrogate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
