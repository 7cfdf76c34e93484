import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from rsgen.config import load_config
from rsgen.errors import RsgenError
from rsgen.train.curves import plot_curves
from rsgen.train.loop import run_training
from tests.conftest import REPO, tiny_overrides


def tiny_config(image_folder, warmup=2, gan=2, **extra):
    overrides = tiny_overrides(
        **{
            "model.scale": 2,
            "data.train": f"[{image_folder}]",
            "data.val": str(image_folder),
            "data.hr_crop": 16,
            "data.val_images": 2,
            "train.batch_size": 2,
            "train.warmup_steps": warmup,
            "train.gan_steps": gan,
            "train.log_every": 1,
            "train.eval_every": 2,
            "train.checkpoint_every": 2,
            **extra,
        }
    )
    return load_config("degan-cpu", overrides)


def test_train_warmup_then_gan_exports_and_logs(image_folder, tmp_path):
    summary = run_training(tiny_config(image_folder), tmp_path / "run", progress=False)
    assert summary["step"] == 4
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "content" in r]
    assert "perceptual" not in steps[0] and {"perceptual", "adversarial", "d_loss"} <= set(steps[-1])
    assert any(r.get("event") == "eval" for r in records)
    for export in ("final", "best"):
        assert (tmp_path / "run" / export / "model.safetensors").is_file()
    assert plot_curves(tmp_path / "run", tmp_path / "curves.png").stat().st_size > 1000


def test_resume_replays_the_same_run(image_folder, tmp_path):
    config = tiny_config(image_folder)
    run_training(config, tmp_path / "straight", progress=False)
    run_training(config, tmp_path / "split", max_steps=2, progress=False)
    with pytest.raises(RsgenError, match="--resume"):
        run_training(config, tmp_path / "split", progress=False)
    run_training(config, tmp_path / "split", resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "split" / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_failure_report(log_dir, run, stderr: str) -> str:
    """What each rank printed, and how far training got: enough to diagnose a CI-only failure."""
    parts = [f"torchrun: {stderr[-1200:]}"]
    for path in sorted(log_dir.rglob("*.log")):
        parts.append(f"{path.relative_to(log_dir)}: {path.read_text(errors='replace')[-1500:]}")
    log = run / "log.jsonl"
    last = log.read_text().splitlines()[-1] if log.exists() else "no log.jsonl"
    parts.append(f"last log line: {last}")
    return "\n".join(parts)


@pytest.mark.slow
def test_torchrun_two_processes_agree_on_weights(image_folder, tmp_path):
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        f"--log-dir={tmp_path / 'rank-logs'}",
        "--redirects=3",
        "-m",
        "rsgen",
        "train",
        "degan-cpu",
        "--out",
        str(run),
        "--quiet",
        "--threads",
        "1",
    ]
    for item in tiny_overrides(
        **{
            "model.scale": 2,
            "data.train": f"[{image_folder}]",
            "data.val": "null",
            "data.hr_crop": 16,
            "train.batch_size": 4,
            "train.warmup_steps": 2,
            "train.gan_steps": 1,
            "train.checkpoint_every": 2,
            # Clipping after DDP's gradient averaging must keep the ranks identical.
            "train.grad_clip": 0.05,
            "train.ema_decay": 0.9,
        }
    ):
        cmd += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    # Own session, so a hang (a collective waiting forever) kills every rank, not just torchrun.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("torchrun training did not finish in 240 s")
    assert proc.returncode == 0, rank_failure_report(tmp_path / "rank-logs", run, stderr)
    end = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()][-1]
    assert end["world_size"] == 2
    first, second = end["rank_checksums"]
    assert first == second


def test_step_decay_schedule():
    from rsgen.train.schedules import step_decay

    assert [step_decay(1.0, s, [2, 4], 0.1) for s in (0, 1, 2, 3, 4, 9)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )


def test_resume_may_change_the_schedule(image_folder, tmp_path):
    run_training(tiny_config(image_folder, warmup=4, gan=0), tmp_path / "run", max_steps=2, progress=False)
    changed = tiny_config(image_folder, warmup=4, gan=0, **{"train.lr_milestones": "[3]"})
    run_training(changed, tmp_path / "run", resume=True, progress=False)
    lrs = [json.loads(line).get("lr") for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    lrs = [lr for lr in lrs if lr is not None]
    assert lrs[:3] == [2e-4, 2e-4, 2e-4] and lrs[3] == pytest.approx(1e-4)


def test_sigterm_stops_at_a_step_with_a_checkpoint(image_folder, tmp_path):
    import signal
    import threading

    import rsgen.train.loop as loop

    config = tiny_config(image_folder, warmup=50, gan=0)
    original, handler_before = loop.step_seed, signal.getsignal(signal.SIGTERM)

    def seed_then_signal(seed, rank, step):
        if step == 3:
            threading.Thread(target=lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
            threading.Event().wait(0.2)
        return original(seed, rank, step)

    loop.step_seed = seed_then_signal
    try:
        summary = run_training(config, tmp_path / "run", progress=False)
    finally:
        loop.step_seed = original
    assert summary["event"] == "stopped" and 3 < summary["step"] < 50
    assert signal.getsignal(signal.SIGTERM) == handler_before
    from rsgen.checkpoint import load_training_state

    _, meta = load_training_state(tmp_path / "run" / "checkpoint.safetensors")
    assert meta["step"] == summary["step"]


def test_moving_average():
    from rsgen.train.curves import moving_average

    assert moving_average([1, 3, 5, 7], 2) == [1, 2, 4, 6]
