"""Smoke test of ``benchmarks/bench_sr.py --quick``: it runs and reports every section.

No timing is asserted: the numbers of ``--quick`` are meaningless by design.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "bench_sr.py"


def run_quick(tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--json", str(out_json), "--markdown", str(out_md)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out_json.read_text()), out_md.read_text(), result.stdout


def positive(value):
    return isinstance(value, int | float) and value > 0


@pytest.mark.slow
def test_quick_benchmark_reports_every_section(tmp_path):
    results, markdown, stdout = run_quick(tmp_path)

    assert results["mode"] == "quick"
    assert "--quick" in results["command"]
    machine = results["machine"]
    assert machine["cpu"] and machine["torch"] and positive(machine["threads"])

    inference = results["inference"]
    assert positive(inference["tile"]) and positive(inference["threads"])
    rows = inference["rows"]
    methods = {(r["method"], r["variant"]) for r in rows}
    for name in ("degan-paper", "degan-cpu"):
        for variant in ("fp32", "fp32 channels_last", "bf16 autocast"):
            assert (name, variant) in methods
    assert {("bicubic", "Pillow"), ("bicubic", "torch F.interpolate")} <= methods
    for row in rows:
        assert positive(row["mpix_per_s"]) and positive(row["seconds"]) and row["runs"] >= 1, row

    memory = results["memory"]
    sizes = [tuple(lr) for lr in results["settings"]["memory_lr_sizes"]]
    assert [tuple(s["lr"]) for s in memory["sizes"]] == sizes
    measured = {(tuple(r["lr"]), r["method"]) for r in memory["rows"]}
    assert measured >= {(lr, method) for lr in sizes for method in ("degan-cpu", "bicubic")}
    assert {r["shape"] for r in memory["rows"]} == {"square", "tall", "wide"}
    for row in memory["rows"]:
        assert "error" not in row, row
        assert positive(row["peak_rss_mib"]) and positive(row["seconds"]), row
        assert row["peak_rss_mib"] >= row["start_rss_mib"]
        (w, h), array_mib = row["lr"], row["output_array_mib"]
        assert row["output"] == [w * 4, h * 4], row
        assert positive(array_mib["uint8"]), row
        assert array_mib["float32"] == pytest.approx(4 * array_mib["uint8"], rel=1e-3), row

    training = results["training"]["rows"]
    runs = {(r["config"], r["scale"], r["phase"]) for r in training}
    for config, scale in (("degan-cpu", 4), ("degan-cpu", 2), ("degan-paper", 4)):
        assert {(config, scale, "warmup"), (config, scale, "gan")} <= runs
    for row in training:
        assert positive(row["it_per_s"]) and positive(row["sec_per_step"]), row

    assert markdown.startswith("Machine: ") and "| method |" in markdown and "| config |" in markdown
    assert "output MP/s" in stdout and "output array MiB (uint8)" in markdown


@pytest.mark.parametrize("sizes", ["12", "250x250,0x5", "250x250,"])
def test_sr_benchmark_rejects_bad_memory_sizes(sizes):
    cmd = [sys.executable, str(SCRIPT), "--memory-sizes", sizes, "--sections", "memory"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "argument --memory-sizes: bad size" in result.stderr.splitlines()[-1]


@pytest.mark.slow
def test_attention_benchmark_compares_local_with_full(tmp_path):
    out_json = tmp_path / "attention.json"
    script = REPO / "benchmarks" / "bench_attention.py"
    cmd = [sys.executable, str(script), "--quick", "--json", str(out_json)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out_json.read_text()
    for tokens in ("256", "1024", "4096"):
        assert tokens in text
    assert "full" in text and "local" in text


@pytest.mark.slow
def test_single_image_benchmark_reports_quality_per_stage_and_the_edit(tmp_path):
    from PIL import Image

    scene = tmp_path / "scene.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((96, 96), Image.BICUBIC).save(
        scene
    )
    script = REPO / "benchmarks" / "bench_single_image.py"
    cmd = [
        sys.executable,
        str(script),
        "--image",
        str(scene),
        "--size",
        "96",
        "--stages",
        "2",
        "4",
        "--variations",
        "1",
        "--fine-steps",
        "2",
        "--roi",
        "20",
        "20",
        "30",
        "30",
        "--out",
        str(tmp_path / "out"),
        "--set",
        "model.width=8",
        "--set",
        "train.batch_size=2",
        "--set",
        "data.crop=32",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [row["steps"] for row in summary["stages"]] == [2, 4]
    assert all(row["sifid_mean"] > 0 and row["train_minutes"] > 0 for row in summary["stages"])
    assert summary["edit"]["outside_pixels_changed"] == 0
    assert (tmp_path / "out" / "quality.png").is_file() and (tmp_path / "out" / "stage-4.png").is_file()


@pytest.mark.slow
def test_t2i_sampling_benchmark_reports_latency_training_and_memory(tmp_path):
    out_json, out_md = tmp_path / "t2i.json", tmp_path / "t2i.md"
    script = REPO / "benchmarks" / "bench_t2i_sampling.py"
    cmd = [sys.executable, str(script), "--quick", "--json", str(out_json), "--markdown", str(out_md)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out_json.read_text())
    assert results["mode"] == "quick" and "--quick" in results["command"]
    rows = results["sampling"]["rows"]
    assert {(r["steps"], r["batch"]) for r in rows} == {(s, b) for s in (10, 5, 2) for b in (1, 2)}
    for row in rows:
        assert "error" not in row, row
        assert positive(row["seconds_per_image"]) and positive(row["decode_seconds_per_image"]), row
        assert row["peak_rss_mib"] >= row["start_rss_mib"] > 0, row
    (training,) = results["training"]["rows"]
    assert positive(training["steps_per_s"]) and training["batch_size"] == 2, training
    assert positive(training["peak_rss_mib"]) and positive(training["params_m"])
    markdown = out_md.read_text()
    assert markdown.startswith("Machine: ") and "| steps |" in markdown and "| config |" in markdown

    bad = subprocess.run(
        [sys.executable, str(script), "--model", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines()[-1].startswith("error: ") and "model_index.json" in bad.stderr
