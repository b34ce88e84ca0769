"""Sample-quality scores: the classifier, the digit FID and friends, the Quality event,
`gan-tui eval`, and the headless quality lines."""

import io
import math

import numpy as np
import pytest
import torch
from rich.console import Console

from gan_tui import quality
from gan_tui.classifier import accuracy, load_classifier, training_digits, validation_digits
from gan_tui.cli import main
from gan_tui.data import load_bundled, to_tensor
from gan_tui.events import EpochEnd, Error, Finished, Quality, Samples
from gan_tui.headless import run_headless
from gan_tui.metrics import read_metrics
from gan_tui.models import prior_labels
from gan_tui.quality import (
    class_scores,
    feature_stats,
    fid_floor,
    frechet_distance,
    histogram_bars,
    real_halves,
    score_digits,
)
from tests.conftest import Recorder, run_cli, train


@pytest.fixture(scope="module")
def real_digits() -> torch.Tensor:
    # A random subset: the split's first half (cleaner writers) differs from its second.
    pick = torch.randperm(10_000, generator=torch.Generator().manual_seed(0))[:2000]
    return to_tensor(load_bundled().images[pick.numpy()])


def test_shipped_classifier_is_accurate_on_the_test_split_it_never_saw():
    train_x, _ = training_digits()
    vx, vy = validation_digits()
    assert len(vy) == 10_000
    seen = {bytes(x.numpy()) for x in train_x}
    assert not any(bytes(x.numpy()) in seen for x in vx)  # disjoint, digit for digit
    assert accuracy(load_classifier("cpu"), vx, vy) >= 0.98


def test_real_halves_are_disjoint_balanced_and_fixed():
    a, b = real_halves()
    assert len(a) == len(b) == 5_000
    assert not {bytes(x.numpy()) for x in a} & {bytes(x.numpy()) for x in b}
    _, probs_a = quality.classify(a)
    _, probs_b = quality.classify(b)
    counts_a, counts_b = (torch.bincount(p.argmax(1), minlength=10) for p in (probs_a, probs_b))
    assert (counts_a - counts_b).abs().max() <= 25  # split per class: the same mix


def test_the_floor_is_what_real_digits_score_and_shrinks_with_the_count():
    # Real digits outside the reference score about the floor; more digits, less bias.
    a, _ = real_halves()
    assert score_digits(a[:1000]).fid == pytest.approx(fid_floor(1000), rel=0.35)
    assert fid_floor(5000) < fid_floor(2000) < fid_floor(1000)
    assert fid_floor(10_000) == fid_floor(5000)  # two chunks of 5,000 each
    scores = score_digits(a[:1000])
    assert scores.floor == fid_floor(1000) and "(real vs real " in scores.line()


def test_scored_classes_follow_the_data_mix_in_every_prefix():
    counts = torch.bincount(torch.from_numpy(load_bundled().labels), minlength=10)
    labels = prior_labels(10_000, counts.tolist())
    assert torch.equal(torch.bincount(labels, minlength=10), counts)
    share = counts.double() / counts.sum()
    for size in (16, 100, 1000, 5000, 7777):
        prefix = torch.bincount(labels[:size], minlength=10).double()
        assert ((prefix - size * share).abs() <= 1).all()
    assert torch.equal(prior_labels(25, None), torch.arange(25) % 10)  # unrecorded: even
    assert set(prior_labels(50, [0, 3] + [0] * 7 + [1]).tolist()) == {1, 9}


def test_real_digits_drawn_evenly_score_worse_than_in_their_own_mix():
    # Why scores draw classes in the data's mix: half A's digits, taken 446 of each class
    # (the rarest class's count), score about 0.4 FID worse than as many in A's own mix.
    a, _ = real_halves()
    labels = quality.classify(a)[1].argmax(1)  # 98.5 % right: near enough to the labels
    rarest = int(torch.bincount(labels, minlength=10).min())
    even = torch.cat([torch.nonzero(labels == c).flatten()[:rarest] for c in range(10)])
    own_mix = torch.arange(len(even))  # A is shuffled: a prefix is a fair sample of it
    fid_even, fid_own = (score_digits(a[pick]).fid for pick in (even, own_mix))
    assert fid_even > fid_own + 0.2


def test_scores_order_real_then_noised_then_pure_noise(real_digits):
    gen = torch.Generator().manual_seed(0)
    noised = (real_digits + 0.3 * torch.randn(real_digits.shape, generator=gen)).clamp(-1, 1)
    noise = torch.rand(real_digits.shape, generator=gen) * 2 - 1
    real, light, pure = (score_digits(x) for x in (real_digits, noised, noise))
    assert real.fid < light.fid < pure.fid
    # Real digits score their floor (the small-sample bias): the others far above it.
    assert real.fid < 1.5 * real.floor and light.fid > 5 * real.fid and pure.fid > 10 * light.fid
    assert real.coverage > 0.99 and real.confidence > 0.95 and real.score > 8
    assert pure.score < real.score and pure.coverage < real.coverage
    assert sum(real.histogram) == real.count == 2000


def test_frechet_distance_matches_the_closed_form_for_diagonal_covariances():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)
    assert frechet_distance(mu1, np.diag(var1), mu1, np.diag(var1)) == pytest.approx(0, abs=1e-9)


def test_scoring_maths_runs_numpy_blas_on_one_thread_and_gives_the_threads_back():
    # OpenBLAS workers spin after each call on the cores training needs (see process.py).
    from threadpoolctl import threadpool_info, threadpool_limits

    from gan_tui.process import one_blas_thread

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):  # as on a 2-core machine
        before = blas_threads()
        seen = one_blas_thread(blas_threads)()
        assert before == [2] * len(before) and seen == [1] * len(before)
        assert blas_threads() == before
    assert frechet_distance.__wrapped__ and feature_stats.__wrapped__  # the scoring uses it


def test_class_scores_of_extreme_predictions():
    sharp_even = torch.eye(10).repeat(5, 1)  # every class, each with certainty
    score, coverage, confidence, histogram = class_scores(sharp_even)
    assert score == pytest.approx(10, rel=1e-6)
    assert (coverage, confidence, histogram) == (pytest.approx(1), pytest.approx(1), (5,) * 10)
    one_class = torch.zeros(8, 10)
    one_class[:, 3] = 1
    score, coverage, _, histogram = class_scores(one_class)
    assert score == pytest.approx(1) and coverage == 0 and histogram[3] == 8


def test_histogram_bars_scale_to_the_largest_class():
    lines = histogram_bars([0, 5, 10, 0, 0, 0, 0, 0, 0, 0], width=10)
    assert len(lines) == 10
    assert lines[2].startswith("2 " + "█" * 10) and lines[2].endswith("10")
    assert lines[1].startswith("1 " + "█" * 5 + " ")
    assert lines[0].split() == ["0", "0"]


def test_quality_event_each_epoch_and_in_metrics_jsonl(small_config):
    trainer, events = train(small_config(quality_samples=200))
    quality = events.of(Quality)
    assert [q.epoch for q in quality] == [0, 1]
    assert [q.global_step for q in quality] == [e.global_step for e in events.of(EpochEnd)]
    for q in quality:
        assert q.samples == sum(q.histogram) == 200 and len(q.histogram) == 10
        assert all(math.isfinite(v) for v in (q.fid, q.score, q.coverage, q.confidence))
        assert q.fid > 0 and 1 <= q.score <= 10 and 0 <= q.coverage <= 1
    # Each Quality follows that epoch's Samples.
    kinds = [type(e) for e in events.events if isinstance(e, (Samples, Quality))]
    assert kinds == [Samples, Quality, Samples, Quality]
    records = [r for r in read_metrics(trainer.run_dir / "metrics.jsonl")
               if r["event"] == "quality"]
    assert [(r["epoch"], r["step"]) for r in records] == [(1, 8), (2, 16)]
    assert records[1]["fid"] == pytest.approx(quality[1].fid)
    # The floor rides along: real digits' FID at the same 200 digits.
    assert records[1]["fid_floor"] == quality[1].floor == fid_floor(200) > 0
    assert records[1]["histogram"] == list(quality[1].histogram)


def test_quality_off_emits_nothing(small_config):
    _, events = train(small_config(epochs=1, quality_samples=0))
    assert events.of(Quality) == []


def test_missing_classifier_weights_turn_scores_off_not_training(small_config, tmp_path,
                                                                  monkeypatch):
    import gan_tui.classifier as classifier

    monkeypatch.setattr(classifier, "WEIGHTS_PATH", tmp_path / "gone.pt")
    caches = (classifier.load_classifier, quality._half_features, quality.reference_stats,
              quality.fid_floor)
    for cache in caches:
        cache.cache_clear()
    try:
        trainer, events = train(small_config(quality_samples=64))
    finally:
        for cache in caches:
            cache.cache_clear()
    warnings = [e.message for e in events.of(Error)]
    assert len(warnings) == 1 and warnings[0].startswith("quality scores off: ")
    assert "gone.pt" in warnings[0] and "--train" in warnings[0]
    assert not events.of(Error)[0].fatal and not events.of(Quality)
    assert events.of(Finished)[0].reason == "completed" and len(events.of(EpochEnd)) == 2


def test_scoring_and_ema_never_change_the_training_trajectory(small_config, tmp_path):
    plain, _ = train(small_config(epochs=1, quality_samples=0, run_dir=str(tmp_path / "a")))
    scored, events = train(small_config(epochs=1, quality_samples=100, ema=0.9,
                                        run_dir=str(tmp_path / "b")))
    assert len(events.of(Quality)) == 1
    for a, b in ((plain.generator, scored.generator),
                 (plain.discriminator, scored.discriminator)):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(x, y), name


def test_headless_prints_quality_each_epoch_and_the_histogram_at_the_end(small_config):
    out = io.StringIO()
    code = run_headless(small_config(quality_samples=100), console=Console(file=out, width=100))
    text = out.getvalue()
    assert code == 0
    assert text.count("quality: FID ") == 2
    assert "Predicted classes of 100 samples after epoch 2:" in text
    assert "\n9 " in text  # the last histogram bar


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    from gan_tui.config import TrainConfig

    run = tmp_path_factory.mktemp("eval") / "run"
    config = TrainConfig(limit=256, epochs=1, seed=0, device="cpu", run_dir=str(run),
                         quality_samples=0)
    trainer, _ = train(config, Recorder())
    return str(trainer.checkpoint_dir / "last.pt")


def test_eval_prints_the_scores(checkpoint):
    result = run_cli("eval", "--checkpoint", checkpoint, "-n", "300", "--seed", "1",
                     "--device", "cpu")
    assert result.returncode == 0, result.stderr
    for name in ("digit FID", "classifier score", "class coverage", "mean confidence",
                 "real digits", f"{fid_floor(300):.2f}", "300 digits", "seed 1",
                 "predicted classes:"):
        assert name in result.stdout


def test_eval_is_repeatable_with_a_seed(checkpoint, capsys):
    outputs = []
    for _ in range(2):
        assert main(["eval", "--checkpoint", checkpoint, "-n", "50", "--seed", "3",
                     "--device", "cpu"]) == 0
        outputs.append([line for line in capsys.readouterr().out.splitlines()
                        if "scored in" not in line])
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "no/such.pt"], "no/such.pt: no such checkpoint file"),
    (["--checkpoint", "{garbage}"], "garbage.pt: "),
])
def test_eval_bad_checkpoints_are_one_line_errors(args, message, tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    args = [a.replace("{garbage}", str(garbage)) for a in args]
    assert main(["eval", *args, "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gan-tui: error: ") and message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("args", [["-n", "1"], ["-n", "many"], ["--seed", "-4"]])
def test_eval_bad_arguments_are_one_line_usage_errors(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gan-tui eval: error: ") and err.count("\n") == 1


def test_runs_table_shows_each_fid_with_its_floor(tmp_path):
    import json

    from gan_tui.runs import runs_table, summarize

    for name, record in (("scored", {"fid": 31.24, "fid_floor": 4.386}),
                         ("old", {"fid": 12.0})):  # a run logged before the floor existed
        run = tmp_path / name
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"preset": "sngan", "epochs": 2}))
        (run / "metrics.jsonl").write_text(json.dumps({"event": "quality", "epoch": 1,
                                                       "step": 8, **record}) + "\n")
    console = Console(file=io.StringIO(), width=120)
    console.print(runs_table([summarize(tmp_path / n) for n in ("scored", "old")], now=0))
    out = console.file.getvalue()
    assert "FID (real)" in out and "31.2 (4.4)" in out and " 12.0 " in out
