"""neuraloperator 2.0's own small-Darcy FNO example, run in the peers' venv (`make bench-peers`).

    .venv-peers/bin/python benchmarks/_peer_neuralop_darcy.py '{"pt_dir": ..., "predictions": ...}'

Started by `benchmarks/own_data_darcy.py`; it prints one JSON line (the last line of stdout).
This replicates `examples/models/plot_FNO_darcy.py` of neuraloperator's main branch (the
version with width 24, lr 1e-2, batch 64, 15 epochs) with the package's own defaults:

- data: `load_darcy_pt` (what `load_darcy_flow_small` calls, without its Zenodo download)
  with the example's arguments: n_train 1000, batch 64, n_tests [100, 50] (the 16² file holds
  50, so 50 and 50), test batches 32; inputs not normalized (encode_input=False), outputs
  normalized channel-wise (UnitGaussianNormalizer over sample and grid axes, eps 1e-7); the
  training DataLoader does not shuffle (its default), the last batch holds 40 samples.
- model: `FNO(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=24,
  projection_channel_ratio=2)`, otherwise defaults: grid positional embedding (x_j = j/n on
  [0, 1), two extra input channels), lifting ratio 2, 4 layers, GELU, channel MLPs of
  expansion 0.5 with soft-gating skips inside the blocks, linear FNO skips, no padding.
- optimisation: `neuralop.training.AdamW(lr=1e-2, weight_decay=1e-4)` (betas 0.9/0.999,
  eps 1e-6 added to the uncorrected √v, decoupled decay p ← p − lr·wd·p after the step;
  optax.adamw: eps 1e-8 on the corrected √v), `CosineAnnealingLR(T_max=30)` stepped once
  per epoch by the Trainer, so over 15 epochs the rate falls only from 1e-2 to
  1e-2·(1 + cos(14π/30))/2 ≈ 5.5e-3 in the last epoch.
- loss: `H1Loss(d=2)` (relative, periodic central differences, summed over the batch) on
  the *normalized* outputs and targets during training; evaluation `H1Loss(d=2)` and
  `LpLoss(d=2, p=2)` on decoded outputs against raw targets, summed and divided by the number
  of samples (per-sample means). `Trainer(n_epochs=15, eval_interval=5)`.

Arguments (JSON): pt_dir (folder of darcy_{train_16,test_16,test_32}.pt), predictions (a
.npz path to write the decoded test predictions to), seed (`torch.manual_seed`; the example
sets none), and optionally threads (`torch.set_num_threads`), t_max_epochs, and per_step (a
variant whose schedule is the cosine of `surrogate`: to zero over the run, every batch).
"""

import contextlib
import json
import platform
import sys
import time

import numpy as np

try:
    import neuralop
    import torch
    from neuralop import H1Loss, LpLoss, Trainer
    from neuralop.data.datasets.darcy import load_darcy_pt
    from neuralop.models import FNO
    from neuralop.training import AdamW
    from neuralop.utils import count_model_params
    from torch.optim.lr_scheduler import CosineAnnealingLR
except ImportError:
    # `make bench` runs every benchmarks/*.py in the project's venv: this is not one of
    # them, but a helper of own_data_darcy.py for the peers' venv
    if __name__ == "__main__" and len(sys.argv) < 2:
        print(
            "_peer_neuralop_darcy.py runs in .venv-peers, from own_data_darcy.py", file=sys.stderr
        )
        sys.exit(0)
    raise

EXAMPLE = dict(
    n_train=1000,
    batch_size=64,
    n_tests=[100, 50],
    test_resolutions=[16, 32],
    test_batch_sizes=[32, 32],
    n_modes=(8, 8),
    hidden_channels=24,
    projection_channel_ratio=2,
    lr=1e-2,
    weight_decay=1e-4,
    t_max=30,
    n_epochs=15,
    eval_interval=5,
)


class PerStepTrainer(Trainer):
    """Steps `per_step_scheduler` every batch (the matched-schedule variant): before each
    batch but the first, i.e. after the previous batch's optimizer step."""

    per_step_scheduler = None
    batches_seen = 0

    def train_one_batch(self, idx, sample, training_loss):
        if self.batches_seen:
            self.per_step_scheduler.step()
        self.batches_seen += 1
        return super().train_one_batch(idx, sample, training_loss)


class NoStep:
    """The Trainer's once-per-epoch `scheduler.step()` with nothing to do."""

    def step(self):
        pass


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} JSON (see the module docstring)")
    a = json.loads(sys.argv[1])
    e = EXAMPLE
    torch.manual_seed(a.get("seed", 0))
    if a.get("threads"):
        torch.set_num_threads(int(a["threads"]))
    per_step = bool(a.get("per_step", False))
    with contextlib.redirect_stdout(sys.stderr):  # the package prints; stdout is for JSON
        train_loader, test_loaders, data_processor = load_darcy_pt(
            n_train=e["n_train"],
            n_tests=e["n_tests"],
            batch_size=e["batch_size"],
            test_batch_sizes=e["test_batch_sizes"],
            data_root=a["pt_dir"],
            train_resolution=16,
            test_resolutions=e["test_resolutions"],
        )
        model = FNO(
            n_modes=e["n_modes"],
            in_channels=1,
            out_channels=1,
            hidden_channels=e["hidden_channels"],
            projection_channel_ratio=e["projection_channel_ratio"],
        )
        optimizer = AdamW(model.parameters(), lr=e["lr"], weight_decay=e["weight_decay"])
        h1loss, l2loss = H1Loss(d=2), LpLoss(d=2, p=2)
        trainer = (PerStepTrainer if per_step else Trainer)(
            model=model,
            n_epochs=e["n_epochs"],
            device="cpu",
            data_processor=data_processor,
            wandb_log=False,
            eval_interval=e["eval_interval"],
            use_distributed=False,
            verbose=True,
        )
        if per_step:
            steps = len(train_loader) * e["n_epochs"]
            trainer.per_step_scheduler = CosineAnnealingLR(optimizer, T_max=steps)
            scheduler = NoStep()
            scheduler_text = f"cosine to 0 over {steps} batches, stepped per batch"
        else:
            t_max = int(a.get("t_max_epochs", e["t_max"]))
            scheduler = CosineAnnealingLR(optimizer, T_max=t_max)
            scheduler_text = f"CosineAnnealingLR(T_max={t_max}) stepped per epoch"
        t = time.perf_counter()
        trainer.train(
            train_loader=train_loader,
            test_loaders=test_loaders,
            optimizer=optimizer,
            scheduler=scheduler,
            regularizer=False,
            training_loss=h1loss,
            eval_losses={"h1": h1loss, "l2": l2loss},
        )
        seconds = time.perf_counter() - t
        final_lr = optimizer.param_groups[0]["lr"]  # the rate of the next step
        metrics = trainer.evaluate_all(
            epoch=e["n_epochs"],
            eval_losses={"h1": h1loss, "l2": l2loss},
            test_loaders=test_loaders,
            eval_modes={},
        )

    # decoded predictions on the test sets, for metrics computed identically for both sides
    model.eval()
    data_processor.eval()
    predictions = {}
    with torch.no_grad():
        for res, loader in test_loaders.items():
            outs = []
            for sample in loader:
                sample = data_processor.preprocess(sample)
                out, _ = data_processor.postprocess(model(**sample), sample)
                outs.append(out.numpy())
            predictions[f"u{res}"] = np.concatenate(outs)[:, 0]
    np.savez(a["predictions"], **predictions)
    print(
        json.dumps(
            {
                "own_metrics": {k: float(v) for k, v in metrics.items()},
                "train_seconds": seconds,
                "parameters": count_model_params(model),
                "final_lr": final_lr,
                "scheduler": scheduler_text,
                "n_test": {str(r): int(len(ld.dataset)) for r, ld in test_loaders.items()},
                "steps_per_epoch": len(train_loader),
                "torch": torch.__version__,
                "neuraloperator": neuralop.__version__,
                "threads": torch.get_num_threads(),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
