"""The benchmarks' code paths at a tiny size: they run and report numbers.

No timing is asserted anywhere (the figures are for `make bench` to print)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks.__main__ import main
from benchmarks.common import Row, alternate, median_interval, percentile, table_lines
from benchmarks.seed_loop import SeedLoop, SeedMNIST, seed_transform
from gan_tui.data import load_digits, to_tensor


def quiet(message: str) -> None:
    pass


def assert_measured(row: Row) -> None:
    assert row.ours is not None and math.isfinite(row.ours) and row.ours > 0
    assert row.passed in (True, False)


def test_seed_dataset_gives_the_engines_tensor_through_pil_and_transforms():
    mnist = SeedMNIST(limit=8, transform=seed_transform())
    image, label = mnist[3]
    digits = load_digits(limit=8)
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert label == int(digits.labels[3])
    # The engine's one-tensor data is, value for value, what the seed's pipeline makes.
    assert torch.equal(image, to_tensor(digits.images)[3])
    assert len(mnist) == 8


def test_seed_loop_trains_and_takes_time():
    loop = SeedLoop(torch.device("cpu"), limit=256)  # 4 batches: the loop wraps epochs
    before = [p.clone() for p in loop.generator.parameters()]
    assert loop.run(6) > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, loop.generator.parameters(),
                                                     strict=True))


def test_median_interval_is_the_textbook_order_statistics():
    # 95% for the median: ranks 4 and 13 of 16, 14 and 27 of 40; none below 6 values.
    assert median_interval([float(v) for v in range(16, 0, -1)]) == (4.0, 13.0)
    assert median_interval([float(v) for v in range(1, 41)]) == (14.0, 27.0)
    assert median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None


def test_alternate_flips_the_order_and_percentile_interpolates():
    calls = []
    results = alternate({"a": lambda rep: calls.append(("a", rep)) or 1.0,
                         "b": lambda rep: calls.append(("b", rep)) or 2.0}, repeats=2)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1)]
    assert results == {"a": [1.0, 1.0], "b": [2.0, 2.0]}
    assert percentile([0, 10], 95) == pytest.approx(9.5)


def test_table_has_every_row_and_the_machine():
    rows = [Row("x", "base", 2.0, 3.0, "img/s", ">= 1.80x", False, ratio=1.5),
            Row("y", "base", None, 80.0, "ms", "<= 100 ms", True)]
    text = "\n".join(table_lines(rows, {"cpu": "test cpu"}))
    assert "| x " in text and "1.50x" in text and "MISS" in text and "pass" in text
    assert "cpu: test cpu" in text


def test_engine_vs_seed_at_a_tiny_size():
    from benchmarks.speed import bench_engine_vs_seed

    row = bench_engine_vs_seed("cpu", steps=2, repeats=1, warmup=1, log=quiet)
    assert_measured(row)
    assert row.baseline and row.baseline > 0 and row.ratio and row.ratio > 0


def test_responsiveness_at_a_tiny_size():
    from benchmarks.tui import bench_responsiveness

    row = bench_responsiveness("cpu", presses=1, log=quiet)
    assert_measured(row)
    assert sorted(len(v) for v in row.samples.values()) == [1, 1, 1]


@pytest.mark.slow
def test_tui_vs_headless_at_a_tiny_size():
    pytest.importorskip("pexpect")
    from benchmarks.tui import bench_tui_vs_headless

    row = bench_tui_vs_headless("cpu", steps=2, repeats=1, threads=1, log=quiet, epochs=2)
    assert_measured(row)
    assert row.baseline and row.baseline > 0


@pytest.mark.slow
def test_startup_at_a_tiny_size():
    pytest.importorskip("pexpect")
    from benchmarks.startup import bench_startup

    row = bench_startup(repeats=1, threads=1, log=quiet)
    assert_measured(row)
    assert row.baseline and row.baseline > 0


@pytest.mark.slow
def test_memory_at_a_tiny_size():
    from benchmarks.memory import bench_memory

    row = bench_memory("cpu", limit=128, repeats=1, threads=1, log=quiet)
    assert_measured(row)
    assert row.baseline and row.baseline > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the sync check needs a CUDA GPU")
def test_sync_check_on_a_gpu():
    from benchmarks.sync import bench_sync

    row = bench_sync("cuda", steps=4, log=quiet)
    assert row.baseline is not None and row.baseline >= 1  # the seed's .item() calls


def test_main_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["--quick", "--device", "cpu", "--only", "speed,sync", "--steps", "2",
                 "--repeats", "1", "--strict", "--quiet", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "engine vs seed loop (cpu)" in printed and "Machine: " in printed
    data = json.loads(out.read_text())
    assert [row["name"] for row in data["rows"]] == ["engine vs seed loop (cpu)"]
    assert data["machine"]["device"] == "cpu"


def test_main_rejects_an_unknown_benchmark():
    with pytest.raises(SystemExit):
        main(["--only", "speed,nonsense"])


def test_quality_benchmark_trains_the_seed_its_epochs_and_the_others_the_budget(tmp_path,
                                                                                 capsys):
    from benchmarks.quality import main as quality_main

    out = tmp_path / "quality.json"
    assert quality_main(["--presets", "seed,cgan", "--seed-epochs", "1", "--budget", "1",
                         "-n", "100", "--threads", "1", "--json", str(out)]) == 0
    seed, cgan = json.loads(out.read_text())
    assert (seed["preset"], seed["budget_s"], seed["epochs"]) == ("seed", 0, 1.0)
    assert cgan["preset"] == "cgan" and cgan["budget_s"] == 1
    for result in (seed, cgan):
        # A second of training may draw one class only: coverage 0 is a fair score then.
        assert result["samples"] == 100 and 0 <= result["coverage"] <= 1
        assert result["fid"] > result["floor"] > 0  # each FID beside its floor (100 digits)
    printed = capsys.readouterr().out
    assert "| seed | none (" in printed and "| 1.0x |" in printed
    assert "| real digits | - | - |" in printed and "| 100% |" in printed


def test_attach_benchmark_opens_a_real_viewer_on_a_long_history():
    from benchmarks.detach import bench_attach_history

    row = bench_attach_history(repeats=1, log=quiet, steps=2_000)
    assert_measured(row)
    assert "history is" in row.note and row.samples["seconds"][0] > 0


def test_ranking_benchmark_ranks_kept_checkpoints_by_two_classifiers(tmp_path, capsys):
    from benchmarks.quality import main as quality_main
    from benchmarks.ranking import main as ranking_main
    from benchmarks.ranking import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    runs = tmp_path / "runs"
    assert quality_main(["--presets", "seed", "--seed-epochs", "3", "-n", "100", "--threads",
                         "1", "--checkpoint-every", "1", "--runs-root", str(runs)]) == 0
    capsys.readouterr()
    assert ranking_main([str(runs), "-n", "200", "--check-epochs", "1"]) == 0
    assert torch.is_grad_enabled()  # it scored under no_grad, not by switching autograd off
    printed = capsys.readouterr().out
    assert "seed @ epoch 1" in printed and "seed @ epoch 3" in printed
    assert "Spearman rank correlation, ours vs check:" in printed


def test_ablation_benchmark_trains_a_variant_of_sngan(tmp_path, capsys):
    from benchmarks.ablation import main as ablation_main

    out = tmp_path / "ablation.json"
    assert ablation_main(["--only", "no-projection", "--budget", "1", "-n", "100",
                          "--json", str(out)]) == 0
    [result] = json.loads(out.read_text())
    assert result["preset"] == "no-projection" and result["budget_s"] == 1
    assert "no-projection: class as an input plane" in capsys.readouterr().out


def test_ablation_older_variants_undo_later_rounds_sngan_changes():
    from unittest.mock import patch

    from benchmarks.ablation import ROUND2_CONFIG, VARIANTS, register
    from gan_tui.models import PRESETS
    from gan_tui.presets import PRESET_INFO

    by_name = {v.name: v for v in VARIANTS}

    def d_layers(name: str) -> int:
        return len(PRESETS[register(by_name[name])].make_discriminator().features)

    # register() adds presets to this process: give the other tests their lists back.
    with patch.dict(PRESETS), patch.dict(PRESET_INFO):
        assert PRESETS[register(by_name["full"])].r1 == PRESETS["sngan"].r1 > 0
        assert PRESETS[register(by_name["round-2"])].r1 == 0
        assert PRESETS[register(by_name["r1"])].r1 == 1.0  # a round-2 variant's own change
        assert PRESETS[register(by_name["lecam-0.3"])].lecam == 0.3
        # Round 5's D (3 x 3 convolutions) in today's variants; older ones undo it.
        shipped = len(PRESETS["sngan"].make_discriminator().features)
        assert d_layers("full") == shipped > d_layers("shallow-d")
        assert d_layers("round-4") == d_layers("round-2") == d_layers("shallow-d")
        assert d_layers("deep-d") == shipped  # round 2's variant that asks for it
    assert "sngan-full" not in PRESETS and "sngan-full" not in PRESET_INFO
    assert ROUND2_CONFIG["batch_size"] != PRESETS["sngan"].defaults["batch_size"]
