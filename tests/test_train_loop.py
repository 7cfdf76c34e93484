"""The shared training machinery: task registry, EMA, gradient clipping, best/ selection, curves."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from rsgen.checkpoint import load_training_state
from rsgen.errors import RsgenError
from rsgen.train.curves import plot_curves, training_keys, validation_groups
from rsgen.train.ema import EMA
from rsgen.train.loop import run_training
from rsgen.train.tasks import TASKS, build_task, register_task, task_class
from rsgen.train.tasks.base import grad_clip_of, optimizer_step
from tests.conftest import REPO
from tests.test_training import tiny_config

# --- registry -----------------------------------------------------------------------------


def test_registry_resolves_known_tasks_lazily():
    code = (
        "import sys, rsgen.train.tasks; "
        "print(sorted(m for m in sys.modules if m.startswith('rsgen.train.tasks.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['rsgen.train.tasks.base']"  # no task module imported yet
    assert task_class("super_resolution").__name__ == "SuperResolutionTask"
    assert {"super_resolution", "rs_clip", "scene_classifier"} <= set(TASKS)
    assert task_class("scene_classifier").__name__ == "SceneClassifierTask"


@pytest.mark.parametrize("name", ["super_resolutoin", None, 3])
def test_unknown_task_is_a_one_line_user_error(name):
    with pytest.raises(RsgenError) as caught:
        build_task({"task": name}, None)
    message = str(caught.value)
    assert "\n" not in message and f"unknown training task {name!r}" in message
    from rsgen.train.tasks import TASKS

    assert f"(known: {', '.join(sorted(TASKS))})" in message and "super_resolution" in message


def test_register_task_refuses_a_second_target():
    register_task("test_scalar", ScalarTask)
    register_task("test_scalar", ScalarTask)  # the same again is fine
    with pytest.raises(ValueError, match="already registered"):
        register_task("test_scalar", "somewhere:Else")


# --- a scalar task: min-mode selection, EMA through the loop ------------------------------


class ScalarTask:
    """One scalar weight w (0 at first) pulled towards 1 by SGD; validation reports ``val_fd`` from the config
    (per step), so the test decides which step is best."""

    selection_metric = "val_fd"
    selection_mode = "min"

    def __init__(self, config, ctx):
        train = config["train"]
        self.total_steps = int(train["steps"])
        self.scores = {int(k): float(v) for k, v in config["scores"].items()}
        self.model = nn.Linear(1, 1, bias=False)
        nn.init.zeros_(self.model.weight)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.grad_clip = grad_clip_of(train)
        self.ema = EMA.from_config(self.model, train)
        self.step = 0

    def train_step(self, step):
        loss = (self.model.weight.sum() - 1.0) ** 2
        optimizer_step(self.optimizer, loss, self.grad_clip)
        self.step = step + 1
        return {"loss": loss.item()}

    def evaluate(self):
        return {"val_fd": self.scores.get(self.step, 100.0), "val_w": self.model.weight.item()}

    def state_tensors(self):
        return {"w": self.model.weight.detach().clone()}, {"step": self.step}

    def load_state(self, tensors, meta):
        with torch.no_grad():
            self.model.weight.copy_(tensors["w"])
        self.step = meta["step"]

    def weight_checksum(self):
        return self.model.weight.item()

    def export(self, directory, extra):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps({**extra, "w": self.model.weight.item()}))


def scalar_config(steps=6, scores=None, **train):
    register_task("test_scalar", ScalarTask)
    return {
        "task": "test_scalar",
        "seed": 0,
        "scores": scores or {},
        "train": {"steps": steps, "log_every": 1, "eval_every": 1, "checkpoint_every": 1, **train},
    }


def best_step(run):
    return json.loads((run / "best" / "config.json").read_text())["training"]["step"]


def test_min_mode_exports_the_lowest_score_and_keeps_it_on_resume(tmp_path):
    scores = {1: 40.0, 2: 12.0, 3: 30.0, 4: 15.0, 5: 11.0, 6: 50.0}
    run_training(scalar_config(scores=scores), tmp_path / "a", progress=False)
    assert best_step(tmp_path / "a") == 5
    # Resumed after the best so far (12 at step 2): a worse step 3 or 4 must not replace it.
    run_training(scalar_config(scores=scores), tmp_path / "b", max_steps=3, progress=False)
    assert best_step(tmp_path / "b") == 2
    run_training(scalar_config(steps=4, scores=scores), tmp_path / "b", resume=True, progress=False)
    assert best_step(tmp_path / "b") == 2


def test_bad_selection_mode_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ScalarTask, "selection_mode", "lowest")
    with pytest.raises(RsgenError, match="selection_mode"):
        run_training(scalar_config(), tmp_path / "run", progress=False)


def test_loop_evaluates_and_exports_the_ema(tmp_path):
    decay = 0.5
    run_training(scalar_config(steps=3, ema_decay=decay), tmp_path / "run", progress=False)
    # SGD on (w - 1)^2 with lr 0.1: w <- w - 0.2 (w - 1), so w = 1 - 0.8^k after k steps.
    tensors, _ = load_training_state(tmp_path / "run" / "checkpoint.safetensors")
    w = tensors["w"].item()
    assert w == pytest.approx(1 - 0.8**3, rel=1e-6)
    average, expected = 0.0, []
    for k in range(1, 4):
        average = decay * average + (1 - decay) * (1 - 0.8**k)
        expected.append(average)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    evals = [r["val_w"] for r in records if r.get("event") == "eval"]
    assert evals == pytest.approx(expected, rel=1e-5)  # validation saw the average
    assert tensors["ema.weight"].item() == pytest.approx(expected[-1], rel=1e-5)
    final = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert final["w"] == pytest.approx(expected[-1], rel=1e-5) and final["w"] != pytest.approx(w)


# --- EMA, gradient clipping -----------------------------------------------------------------


def test_ema_matches_the_closed_form_on_a_scalar():
    module = nn.Linear(1, 1, bias=False)
    frozen = nn.Linear(1, 1, bias=False).requires_grad_(False)
    module.add_module("frozen", frozen)
    with torch.no_grad():
        module.weight.fill_(2.0)
    decay, start = 0.9, 2
    ema = EMA(module, decay, start_step=start)
    assert set(ema.average) == {"weight"}  # frozen parameters are not averaged
    values = [3.0, -1.0, 4.0, 1.5, 0.25, 7.0]
    for step, value in enumerate(values):
        with torch.no_grad():
            module.weight.fill_(value)
        ema.update(step)
    # Before the start step the average is a copy; then s_n = d^n s_0 + (1 - d) sum d^(n-i) p_i.
    tail = values[start:]
    n = len(tail)
    expected = decay**n * values[start - 1] + (1 - decay) * sum(
        decay ** (n - 1 - i) * p for i, p in enumerate(tail)
    )
    assert ema.average["weight"].item() == pytest.approx(expected, rel=1e-6)
    with ema.averaged_weights():
        assert module.weight.item() == pytest.approx(expected, rel=1e-6)
    assert module.weight.item() == 7.0  # own weights back
    assert EMA.from_config(module, {"ema_decay": 0}) is None and EMA.from_config(module, {}) is None
    with pytest.raises(RsgenError, match="ema_decay"):
        EMA(module, 1.5)


def test_grad_clip_bounds_the_global_norm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    x = torch.randn(16, 4) * 100

    def change(clip):
        clone = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
        clone.load_state_dict(model.state_dict())
        opt = torch.optim.SGD(clone.parameters(), lr=1.0)
        before = [p.detach().clone() for p in clone.parameters()]
        norm = optimizer_step(opt, clone(x).pow(2).mean(), clip)
        after = clone.parameters()
        step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, after, strict=True)])
        return norm, step.norm().item()

    norm, moved = change(0.5)
    assert norm > 10 and moved == pytest.approx(0.5, rel=1e-4)
    unclipped_norm, unclipped = change(0.0)
    assert unclipped_norm is None and unclipped == pytest.approx(norm, rel=1e-4)
    assert grad_clip_of({}) == 0.0 and grad_clip_of({"grad_clip": None}) == 0.0
    with pytest.raises(RsgenError, match="grad_clip"):
        grad_clip_of({"grad_clip": -1})


def test_sr_resume_with_ema_and_grad_clip_replays_exactly(image_folder, tmp_path):
    config = tiny_config(image_folder, **{"train.ema_decay": 0.8, "train.grad_clip": 0.05})
    run_training(config, tmp_path / "straight", progress=False)
    run_training(config, tmp_path / "split", max_steps=2, progress=False)
    run_training(config, tmp_path / "split", resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "split" / "checkpoint.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a)
    for key in a:
        assert (a[key] == b[key]).all(), key
    # The export is the average, not the last weights.
    exported = load_file(str(tmp_path / "straight" / "final" / "model.safetensors"))
    for name, value in exported.items():
        assert (value == a[f"ema.{name}"].half()).all(), name
    assert any((a[f"ema.{n}"] != a[f"generator.{n}"]).any() for n in exported)
    logs = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert all(r["grad_norm"] > 0 for r in logs if "content" in r)


def test_checkpoint_without_ema_resumes_with_ema_on(image_folder, tmp_path):
    run_training(tiny_config(image_folder, gan=0), tmp_path / "run", max_steps=1, progress=False)
    assert not any(k.startswith("ema.") for k in load_file(str(tmp_path / "run" / "checkpoint.safetensors")))
    on = tiny_config(image_folder, gan=0, **{"train.ema_decay": 0.5})
    assert run_training(on, tmp_path / "run", resume=True, progress=False)["step"] == 2
    state = load_file(str(tmp_path / "run" / "checkpoint.safetensors"))
    assert any(k.startswith("ema.") for k in state)


# --- curves -----------------------------------------------------------------------------------


def test_curves_plot_whatever_keys_a_task_logs(tmp_path):
    lines = [{"event": "start", "step": 0, "end": 4, "world_size": 1}]
    for step in range(1, 5):
        lines.append({"step": step, "time": 1.0, "loss": 2.0 / step, "kl": -0.1 * step, "lr": 1e-4})
        lines.append({"step": step, "sec_per_step": 0.1, "loss": 1.5 / step, "recon": 0.5, "flag": True})
    for step, fd in ((2, 150.0), (4, 120.0)):
        lines.append(
            {
                "step": step,
                "event": "eval",
                "val_fd": fd,
                "val_fd_baseline": 40.0,
                "val_is": 4.0 + step,
                "val_clip_score": 0.25,
                "val_kid": 0.01,
                "val_psnr": 30.0,
            }
        )
    lines.append({"event": "end", "step": 4, "rank_checksums": [1.0]})
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert training_keys(records) == ["loss", "kl", "recon"]
    # Fractions together; FD (and its reference) and PSNR apart from the IS, in log order.
    assert validation_groups(records) == [
        ["val_fd", "val_fd_baseline"],
        ["val_is"],
        ["val_clip_score", "val_kid"],
        ["val_psnr"],
    ]
    png = plot_curves(log, tmp_path / "curves.png", title="t")
    assert png.stat().st_size > 1000


# --- resuming from what a user has on disk ---------------------------------------------------


def test_resume_faults_are_one_line_errors(image_folder, tmp_path):
    from safetensors.torch import save_file

    from rsgen.train.loop import CHECKPOINT_NAME

    run = tmp_path / "run"
    run_training(tiny_config(image_folder, warmup=4, gan=0), run, max_steps=2, progress=False)
    checkpoint = run / CHECKPOINT_NAME
    good = checkpoint.read_bytes()

    def resume_fails(config, match, **options):
        with pytest.raises(RsgenError, match=match) as caught:
            run_training(config, run, resume=True, progress=False, **options)
        assert "\n" not in str(caught.value)

    config = tiny_config(image_folder, warmup=4, gan=0)
    resume_fails(config, "checkpoint is at step 2: nothing to do up to step 1", max_steps=1)
    for scale, match in ((4, "does not fit this run's config"), ("abc", "invalid training config")):
        resume_fails(tiny_config(image_folder, warmup=4, gan=0, **{"model.scale": scale}), match)
    save_file({"x": torch.zeros(1)}, str(checkpoint))
    resume_fails(config, "not an rsgen training checkpoint")
    save_file({"x": torch.zeros(1)}, str(checkpoint), metadata={"rsgen_meta": "{not json"})
    resume_fails(config, "metadata is not JSON")
    save_file({"x": torch.zeros(1)}, str(checkpoint), metadata={"rsgen_meta": '{"step": 2}'})
    resume_fails(config, "lacks the step or the task state")
    checkpoint.unlink()
    resume_fails(config, f"no {CHECKPOINT_NAME} to resume from")
    final = json.loads((run / "final" / "config.json").read_text())["training"]["step"]
    assert final == 2  # nothing restarted at step 0 over the run
    checkpoint.write_bytes(good)
    run_training(config, run, resume=True, max_steps=3, progress=False)  # the run itself is fine
