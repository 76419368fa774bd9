"""neuraloperator 2.0's FNO on arrays from `benchmarks/operators.py`, in the peers' venv.

    .venv-peers/bin/python benchmarks/_peer_neuralop_fno.py '{"arrays": ..., "out": ..., ...}'

Started by `benchmarks/operators.py` (`make bench-peers` makes the venv); it prints one JSON
line (the last line of stdout). The training is the one `operators.py` gives its own models,
written with torch and neuraloperator's own parts:

- data: the `.npz` at `arrays` holds x_train, y_train, x_test, y_test (and x_fine, y_fine
  for the zero-shot resolution), float32, (sample, channel, *grid); inputs and outputs are
  normalized channel-wise over samples and grid points (mean, std + 1e-6) as
  `surrogate.data.Normalizer.fit` does, the loss is on decoded outputs;
- model: `neuralop.models.FNO(n_modes, in_channels, out_channels, hidden_channels=width,
  n_layers, domain_padding=padding)`, otherwise neuraloperator's defaults (grid positional
  embedding, lifting and projection ratio 2, channel MLPs, soft-gating skips). Its
  `n_modes` counts the modes kept along each axis in total, negative frequencies included
  (n // 2 + 1 along the last, real-FFT axis): the FNO paper's 12 modes per axis are
  `n_modes=(24, 24)`, which `operators.py` passes;
- optimisation: `torch.optim.AdamW(lr, weight_decay)`, `StepLR(step_size, gamma)` stepped
  once per epoch, batches of `batch` drawn by a shuffling DataLoader (last batch dropped
  when short, as `surrogate.training.fit` does);
- loss: `neuralop.LpLoss(d=ndim, p=2)`, relative L2 averaged over the batch.

Arguments (JSON): arrays, out (.npz for the decoded test predictions), modes, width, layers,
padding, lr, weight_decay, step_epochs, gamma, epochs, batch, seed, threads (optional).
"""

import json
import platform
import sys
import time

import numpy as np

try:
    import neuralop
    import torch
    from neuralop import LpLoss
    from neuralop.models import FNO
    from neuralop.utils import count_model_params
except ImportError:
    # `make bench` runs every benchmarks/[!_]*.py in the project's venv; this helper needs
    # the peers' venv and is started by operators.py
    if __name__ == "__main__" and len(sys.argv) < 2:
        print("_peer_neuralop_fno.py runs in .venv-peers, from operators.py", file=sys.stderr)
        sys.exit(0)
    raise


def _stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    axes = (0, *range(2, a.ndim))
    shape = (1, -1) + (1,) * (a.ndim - 2)
    return a.mean(axis=axes).reshape(shape), (a.std(axis=axes) + 1e-6).reshape(shape)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} JSON (see the module docstring)")
    a = json.loads(sys.argv[1])
    torch.manual_seed(int(a.get("seed", 0)))
    if a.get("threads"):
        torch.set_num_threads(int(a["threads"]))
    data = np.load(a["arrays"])
    x_tr, y_tr = data["x_train"], data["y_train"]
    (xm, xs), (ym, ys) = _stats(x_tr), _stats(y_tr)
    ndim = x_tr.ndim - 2

    def encode(x):
        return torch.from_numpy(((x - xm) / xs).astype(np.float32))

    ym_t, ys_t = torch.from_numpy(ym.astype(np.float32)), torch.from_numpy(ys.astype(np.float32))
    train = torch.utils.data.TensorDataset(encode(x_tr), torch.from_numpy(y_tr))
    generator = torch.Generator().manual_seed(int(a.get("seed", 0)))
    loader = torch.utils.data.DataLoader(
        train, batch_size=int(a["batch"]), shuffle=True, drop_last=True, generator=generator
    )
    model = FNO(
        n_modes=tuple(a["modes"]),
        in_channels=x_tr.shape[1],
        out_channels=y_tr.shape[1],
        hidden_channels=int(a["width"]),
        n_layers=int(a["layers"]),
        domain_padding=float(a["padding"]) or None,
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=float(a["lr"]), weight_decay=float(a["weight_decay"])
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=int(a["step_epochs"]), gamma=float(a["gamma"])
    )
    loss_fn = LpLoss(d=ndim, p=2, reduction="mean")
    epoch_seconds, train_loss = [], []
    start = time.perf_counter()
    for _ in range(int(a["epochs"])):
        t = time.perf_counter()
        model.train()
        total, batches = 0.0, 0
        for xb, yb in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb) * ys_t + ym_t, yb)
            loss.backward()
            optimizer.step()
            total, batches = total + float(loss), batches + 1
        scheduler.step()
        epoch_seconds.append(time.perf_counter() - t)
        train_loss.append(total / max(batches, 1))
    seconds = time.perf_counter() - start

    model.eval()
    predictions = {}
    with torch.no_grad():
        for split in ("test", "fine"):
            if f"x_{split}" not in data:
                continue
            x = data[f"x_{split}"]
            outs = [
                (model(encode(x[i : i + 25])) * ys_t + ym_t).numpy() for i in range(0, len(x), 25)
            ]
            predictions[split] = np.concatenate(outs)
    np.savez(a["out"], **predictions)
    print(
        json.dumps(
            {
                "train_seconds": seconds,
                "epoch_seconds": epoch_seconds,
                "train_loss": train_loss,
                "parameters": count_model_params(model),
                "torch": torch.__version__,
                "neuraloperator": neuralop.__version__,
                "threads": torch.get_num_threads(),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
