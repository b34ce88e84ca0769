"""The training loop: `Trainer` runs epochs of `GanStep`, keeps the stat windows, applies
the divergence policy, and fixes the order of an epoch's end.

It knows nothing of any UI: it emits events (gan_tui.events) to a sink and, between
steps, obeys commands through `Control`. Files go through `RunDir`, checkpoints are
made and read back by `state`. Under torchrun (`Dist`, train/dist.py) every rank runs
this same loop on its share of each batch; rank 0 alone writes, scores and draws.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gan_tui.config import TrainConfig
from gan_tui.data import conditional_problem, load_digits, to_tensor
from gan_tui.errors import DataError, GanTuiError
from gan_tui.events import (
    Command,
    Diverged,
    EpochEnd,
    Error,
    Event,
    Finished,
    Notice,
    Sample,
    Samples,
    Sink,
    Started,
    StepStats,
    Stop,
)
from gan_tui.metrics import EPOCH, LOG, WINDOW, RunningStats
from gan_tui.models import NUM_CLASSES, PRESETS, build_models, cycle_labels, prior_labels
from gan_tui.process import Presence, ThreadShare
from gan_tui.serve.registry import runtime_dir
from gan_tui.train import state as run_state
from gan_tui.train.augment import make_augment
from gan_tui.train.control import Control
from gan_tui.train.dist import Dist
from gan_tui.train.ema import STANDING_BATCH, ema_decay, make_ema, standing_statistics
from gan_tui.train.losses import make_loss
from gan_tui.train.rundir import RunDir, choose_run_dir
from gan_tui.train.sampling import generate_tensor, label_tuple, requested_inputs, to_images
from gan_tui.train.schedule import lr_scale, set_learning_rate
from gan_tui.train.scoring import QualityScorer
from gan_tui.train.setup import fresh_seed, make_adam, seed_everything, steps_per_epoch
from gan_tui.train.step import GanStep

MAX_SAMPLES = 256  # digits one Sample command may ask for (a screen shows 16)
# What a loss that stops being a number does: stop the run, or pause it for the user.
DIVERGENCE_ACTIONS = ("stop", "pause")


class Trainer:
    """Train one run of a preset; see the module docstring.

    `config` is copied: the trainer's `config` holds what the run really uses (e.g. the
    seed it chose). `on_divergence` is what a NaN/inf loss does: "stop" (headless: exit,
    nothing saved over the last good checkpoint) or "pause" (the TUI: wait for the user).
    """

    def __init__(self, config: TrainConfig, sink: Sink, resume: str | Path | None = None,
                 force: bool = False, *, on_divergence: str = "stop") -> None:
        if on_divergence not in DIVERGENCE_ACTIONS:
            raise ValueError(f"on_divergence must be one of {', '.join(DIVERGENCE_ACTIONS)}, "
                             f"got {on_divergence!r}")
        # Our own copy: the caller's config stays as it was given.
        config = dataclasses.replace(config.validate(), extra=dict(config.extra))
        self.sink = sink
        self.on_divergence = on_divergence
        # Under torchrun: this rank's device and the process group; else one process.
        self.dist = Dist.setup(config.device, config.batch_size, config.sync_bn)
        if self.dist.distributed and on_divergence != "stop":
            raise ValueError("a torchrun rank has nobody to resume it: on_divergence='stop'")
        self.control = Control(self, self.dist.agree if self.dist.distributed else None)
        self.device = self.dist.device
        state = None
        if resume is not None:
            state, config = run_state.read_resume(resume, config, force)
        if config.seed is None:
            config = dataclasses.replace(config, seed=self.dist.same_on_all(fresh_seed()))
        self.config = config
        seed_everything(config.seed)

        self._load_data()
        self._build_models()
        self.scorer = QualityScorer(config, self.device, self.score_labels, self.emit, self._log)
        self.scorer.on = self.scorer.on and self.dist.is_zero

        # Separate generators: showing samples must not change the training trajectory.
        noise_rng = torch.Generator().manual_seed(config.seed + 1)
        self.fixed_noise = torch.randn(config.sample_count, config.latent_dim, generator=noise_rng)
        self.fixed_labels = cycle_labels(config.sample_count) if self.conditional else None
        self.sample_rng = torch.Generator().manual_seed(config.seed + 2)

        self.epoch = 0  # epochs completed
        self.batch = 0  # batches done in the current epoch
        self.global_step = 0
        self.permutation: Tensor | None = None
        self.history: list[dict[str, Any]] = []
        self.stats = RunningStats(self.device)
        self.epoch_seconds = 0.0
        self._resumed_from = str(resume) if resume else None
        self._diverged: Diverged | None = None
        if state is not None:
            run_state.load_trainer_state(self, state, str(self._resumed_from))
        self.dist.broadcast_state(self.generator, self.discriminator)
        self.dist.seed_noise(config.seed, self.global_step)

        self.files = RunDir(choose_run_dir(config), self.emit, writer=self.dist.is_zero)
        if state is not None:
            self.files.last_good = (Path(str(self._resumed_from)).absolute(), self.global_step)
        self.files.open(config, resumed_at=None if state is None else self.global_step)

    def _load_data(self) -> None:
        config = self.config
        digits = load_digits(config.dataset, config.split, config.data_dir, config.limit,
                             config.invert)
        self.conditional = PRESETS[config.preset].conditional
        if self.conditional and (problem := conditional_problem(digits)):
            raise DataError(problem)
        self.dataset_name = digits.source
        self.data = to_tensor(digits.images, self.device)
        self.labels = torch.from_numpy(digits.labels).to(self.device)
        # The data's class mix, which scores and standing statistics draw (prior_labels).
        self.class_counts = (tuple(int(c) for c in np.bincount(digits.labels,
                                                                minlength=NUM_CLASSES))
                             if self.conditional else None)
        self.steps_per_epoch = steps_per_epoch(len(self.data), config.batch_size,
                                               self.dist.ranks.world_size)

    def _build_models(self) -> None:
        config = self.config
        self.generator, self.discriminator = self.dist.prepare_models(
            *(m.to(self.device) for m in build_models(config.preset, config.latent_dim)),
            sync_bn=config.sync_bn)
        preset = PRESETS[config.preset]
        self.loss = make_loss(preset.loss)
        betas = (config.beta1, config.beta2)
        self.opt_g = make_adam(self.generator.parameters(), config.lr_g, betas)
        self.opt_d = make_adam(self.discriminator.parameters(), config.lr_d, betas)
        # An EMA copy of G for samples and scores only; deepcopy draws no random numbers.
        self.generator_ema = make_ema(self.generator) if config.ema > 0 else None
        self._ema_statistics_at: int | None = None  # the step its standing statistics are for
        self.gan_step = GanStep(self.generator, self.discriminator, self.opt_g, self.opt_d,
                                self.loss, config.latent_dim, self.device,
                                self.generator_ema, self.dist.gradient_sync(),
                                make_augment(preset.augment), preset.r1, preset.lecam)

    # ------------------------------------------------------------ the run folder

    @property
    def run_dir(self) -> Path:
        return self.files.path

    @property
    def checkpoint_dir(self) -> Path:
        return self.files.checkpoints

    @property
    def samples_dir(self) -> Path:
        return self.files.samples

    # ------------------------------------------------------------ commands

    def send(self, command: Command) -> None:
        """Thread-safe and reentrant (SimpleQueue), so signal handlers may call it too."""
        self.control.send(command)

    def request_stop(self, reason: str = "stop") -> None:
        self.send(Stop(reason))

    # ------------------------------------------------------------- running

    def run(self) -> Finished:
        """Train until the configured epoch count or a Stop; return the Finished event."""
        self.scorer.prepare()
        self.emit(self._started_event())
        self._share_cores()
        self._started_at = time.monotonic()
        try:
            while self.epoch < self.config.epochs:
                if not self._train_epoch() or not self._end_epoch():
                    return self._finish("stopped")
            return self._finish("completed")
        except Exception as exc:
            if not self.dist.distributed:  # a rank's state mid-collective is no checkpoint
                self._save_after_crash()
            self.emit(Error(f"training failed: {type(exc).__name__}: {exc}", fatal=True))
            raise
        finally:
            self.files.close()
            if self.threads.presence is not None:
                self.threads.presence.leave()

    def _share_cores(self) -> None:
        """Take this run's share of the cores (--threads) and say what it chose."""
        presence: Presence | None = Presence(runtime_dir())
        try:
            presence.enter()
        except (OSError, GanTuiError):  # no runtime folder: count this run alone
            presence = None
        self.threads = ThreadShare(self.config.threads, presence)
        self.threads.poll(time.monotonic())
        self.emit(Notice(f"Using {self.threads.describe()}"))

    def step(self, real: Tensor, labels: Tensor | None = None, images: int | None = None) -> None:
        """One GAN step on a batch (see GanStep); its statistics stay on the device.
        `images`: the global batch's size under torchrun (speeds count every rank's)."""
        decay = ema_decay(self.config.ema, self.global_step)
        if self.config.lr_decay:
            self._decay_learning_rates()
        self.stats.add(self.gan_step(real, labels, decay, self.global_step),
                       images or real.size(0))

    def _decay_learning_rates(self) -> None:
        """--lr-decay: this step's rates, a function of the step alone (resumes exactly)."""
        total = self.config.epochs * self.steps_per_epoch
        scale = lr_scale(self.global_step, total, self.config.lr_decay)
        set_learning_rate(self.opt_g, self.config.lr_g * scale)
        set_learning_rate(self.opt_d, self.config.lr_d * scale)

    def _train_epoch(self) -> bool:
        """Run the rest of the current epoch; False when a Stop arrived."""
        if self.permutation is None:
            self.permutation = self.dist.permutation(len(self.data))
            self.stats.reset(EPOCH)
            self.epoch_seconds = 0.0
        self._reset_window()
        size = self.config.batch_size
        while self.batch < self.steps_per_epoch:
            if not self.control.obey_pending():
                return False
            step_began = time.monotonic()
            batch = self.permutation[self.batch * size:(self.batch + 1) * size]
            indices = self.dist.shard(batch)  # all of it, alone
            self.step(self.data[indices], self.labels[indices] if self.conditional else None,
                      len(batch))
            self.batch += 1
            self.global_step += 1
            now = time.monotonic()
            self.epoch_seconds += now - step_began
            if self.threads.poll(now) is not None:  # another run started or ended
                self.emit(Notice(f"Using {self.threads.describe()}"))
            if not self._after_step():
                return False
        return True

    def _after_step(self) -> bool:
        """Emit due stats and log lines; False when training should stop (it diverged).

        NaN/inf is looked for where the statistics are read anyway: no extra host sync.
        """
        last_of_epoch = self.batch == self.steps_per_epoch
        now = time.monotonic()
        bad = ""
        if last_of_epoch or (now - self._window_began) * 1000 >= self.config.stats_interval_ms:
            stats = self._step_stats(now)
            self.emit(stats)
            self._reset_window()
            bad = _nonfinite({"g_loss": stats.g_loss, "d_loss": stats.d_loss,
                              "d_real": stats.d_real, "d_fake": stats.d_fake})
        if self.global_step % self.config.log_every == 0:
            means = self.stats.means(LOG)
            self._log({"event": "step", "epoch": self.epoch + 1, "step": self.global_step,
                       **means})
            self.stats.reset(LOG)
            bad = bad or _nonfinite(means)
        return self._diverge(bad) if bad else True

    def _step_stats(self, now: float) -> StepStats:
        means = self.stats.means(WINDOW)  # the only host-device sync, once per window
        window = max(now - self._window_began, 1e-9)
        return StepStats(
            epoch=self.epoch, epochs=self.config.epochs, batch=self.batch,
            steps_per_epoch=self.steps_per_epoch, global_step=self.global_step,
            img_per_s=self.stats.images[WINDOW] / window, elapsed_s=self._elapsed(), **means)

    def _reset_window(self) -> None:
        self.stats.reset(WINDOW)
        self._window_began = time.monotonic()

    def _elapsed(self) -> float:
        return time.monotonic() - self._started_at - self.control.paused_s

    def _end_epoch(self) -> bool:
        """Record the epoch, show and save it; False when training should stop (diverged).

        Losses can stay finite while the weights overflow (BCE clamps its logs), so the
        weights are checked here too, once an epoch.
        """
        means = self.stats.means(EPOCH)
        bad = _nonfinite(means) or self._weights_problem()
        if bad and self._diverged is None and not self._diverge(bad):
            return False
        if not self.control.go_on_together():  # torchrun: any rank's divergence stops all
            return False
        seconds = self.epoch_seconds
        img_per_s = self.stats.images[EPOCH] / max(seconds, 1e-9)
        record = {"event": "epoch", "epoch": self.epoch + 1, "step": self.global_step, **means,
                  "img_per_s": img_per_s, "seconds": seconds}
        self.history.append(record)
        self._log(record)
        self.emit(EpochEnd(epoch=self.epoch, epochs=self.config.epochs,
                           global_step=self.global_step, img_per_s=img_per_s, seconds=seconds,
                           **means))
        if self.dist.is_zero:  # nobody sees the other ranks' digits
            images = self.generate(self.fixed_noise, self.fixed_labels)
            self.files.save_sample_grid(images, self.epoch + 1)
            self.emit(Samples(self.epoch, self.global_step, images, fixed=True,
                              labels=label_tuple(self.fixed_labels)))
        # The epoch's end takes ~0.1 s (scores, the save): answer sample requests in between.
        self.control.answer_sample_requests()
        if self.scorer.on:
            self.scorer.score(self._generate_tensor, self.epoch, self.global_step)
            self.control.answer_sample_requests()

        self.epoch += 1
        self.batch = 0
        self.permutation = None
        saved = self.save("epoch")
        if saved is not None and self.epoch % self.config.checkpoint_every == 0:
            self.files.keep_copy(saved, f"epoch_{self.epoch:04d}.pt", self.epoch,
                                 self.global_step)
        return True

    def _finish(self, reason: str) -> Finished:
        if self._diverged is None and (problem := self._weights_problem()):
            self._report_divergence(problem)
        if self._diverged is not None:  # nothing is saved over the last good checkpoint
            reason = "diverged"
        elif reason == "stopped":
            self.save(self.control.stop_reason)
        elif self.files.last_good is None or self.files.last_good[1] != self.global_step:
            self.save("final")  # the final epoch's save failed: one more try
        self.dist.barrier()  # the other ranks wait for rank 0's last save before they exit
        self.dist.close()
        last = self.files.last_good
        finished = Finished(reason=reason, epoch=self.epoch, global_step=self.global_step,
                            checkpoint=str(last[0]) if last else None, run_dir=str(self.run_dir),
                            checkpoint_step=last[1] if last else None)
        self.emit(finished)
        return finished

    def _save_after_crash(self) -> None:
        with contextlib.suppress(Exception):
            self.save("crash")

    # ------------------------------------------------------------ divergence

    def _diverge(self, what: str) -> bool:
        """Report the divergence and save nothing, then stop or pause as
        on_divergence says. True when the user resumed training."""
        self._report_divergence(what)
        if self.dist.distributed:
            return True  # the next control round stops every rank (train/control.py)
        if self.on_divergence == "pause":
            return self.control.wait_while_paused()
        return False

    def _report_divergence(self, what: str) -> None:
        last = self.files.last_good
        kept = (f"nothing was saved over the last good checkpoint {last[0]} (step {last[1]})"
                if last else "no checkpoint of this run had been saved yet")
        self._diverged = Diverged(
            epoch=self.epoch, global_step=self.global_step,
            message=f"training diverged at step {self.global_step}, in epoch "
                    f"[{self.epoch}/{self.config.epochs}] ({what}); {kept}",
            checkpoint=str(last[0]) if last else None)
        self.emit(self._diverged)

    def may_resume(self) -> bool:
        """After a divergence, training resumes only while the weights are numbers."""
        if self._diverged is None:
            return True
        problem = self._weights_problem()
        if problem:
            self.emit(Error(f"cannot resume: {problem}; quit and go on from the last good "
                            f"checkpoint with lower learning rates ({self.files.kept()})",
                            fatal=False))
            return False
        self._diverged = None
        return True

    def _weights_problem(self) -> str:
        """'the generator weights are not finite' (NaN or inf), or '' (a host sync each)."""
        names = []
        for name, model in (("generator", self.generator), ("discriminator", self.discriminator)):
            tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
            if tensors and not torch.stack([t.isfinite().all() for t in tensors]).all():
                names.append(name)
        return f"the {' and '.join(names)} weights are not finite" if names else ""

    # ------------------------------------------------- what Control asks of us

    @property
    def diverged(self) -> bool:
        return self._diverged is not None

    def save_on_request(self, reason: str) -> None:
        path = self.save(reason)
        if path is not None and reason == "request":
            self.files.keep_copy(path, f"step_{self.global_step:07d}.pt", self.epoch,
                                 self.global_step)

    def draw_samples(self, command: Sample) -> None:
        count = command.count or self.config.sample_count
        if not 1 <= count <= MAX_SAMPLES:  # a viewer's command: never trusted to be sane
            self.emit(Error(f"cannot draw {count} samples: 1-{MAX_SAMPLES} at a time",
                            fatal=False))
            return
        if command.digit is not None and not 0 <= command.digit < NUM_CLASSES:
            self.emit(Error(f"no digit {command.digit}: choose 0-9", fatal=False))
            return
        if command.digit is not None and self.class_counts and not self.class_counts[command.digit]:
            present = ", ".join(str(c) for c, n in enumerate(self.class_counts) if n)
            self.emit(Error(f"no class {command.digit} in this run's data (it has {present})",
                            fatal=False))
            return
        noise, labels = requested_inputs(count, command.digit, self.config.latent_dim,
                                         self.sample_rng, self.conditional)
        self.emit(Samples(self.epoch, self.global_step, self.generate(noise, labels),
                          fixed=False, labels=label_tuple(labels)))

    def pause_begins(self) -> None:
        if self.stats.images[WINDOW]:  # steps since the last stats: show where it stopped
            self.emit(self._step_stats(time.monotonic()))
            self._reset_window()

    def pause_ends(self) -> None:
        self._reset_window()

    # ------------------------------------------------------------ outputs

    def emit(self, event: Event) -> None:
        self.sink(event)

    def generate(self, noise: Tensor, labels: Tensor | None = None) -> np.ndarray:
        """Digits for `noise` (and class `labels` for conditional presets) in eval mode
        (BatchNorm running stats), from the EMA generator when there is one, as float32
        N x 28 x 28."""
        return to_images(self._generate_tensor(noise, labels))

    def _generate_tensor(self, noise: Tensor, labels: Tensor | None = None) -> Tensor:
        ema = self._ready_ema()
        model = ema if ema is not None else self.generator  # (a Sequential's truth is its length)
        return generate_tensor(model, noise, labels, self.device)

    def score_labels(self, count: int) -> Tensor | None:
        """Labels for `count` scored draws in the training data's class mix (None for an
        unconditional preset)."""
        return prior_labels(count, self.class_counts) if self.conditional else None

    def _ready_ema(self) -> nn.Module | None:
        """The EMA generator (None without one), its BatchNorm statistics its own for the
        current step (train/ema.py), computed at most once a step."""
        if self.generator_ema is not None and self._ema_statistics_at != self.global_step:
            standing_statistics(self.generator_ema, self.config.latent_dim, self.device,
                                self.score_labels(STANDING_BATCH))
            self._ema_statistics_at = self.global_step
        return self.generator_ema

    def save(self, reason: str) -> Path | None:
        """Atomically write checkpoints/last.pt; report failure without stopping training."""
        problem = self._weights_problem()
        if self._diverged is not None or problem:
            self.emit(Error(f"not saving {self.files.last}: {problem or 'training diverged'}; "
                            f"{self.files.kept()}", fatal=False))
            return None
        return self.files.save_checkpoint(self.state_dict(), self.epoch, self.global_step,
                                          reason)

    def _log(self, record: dict[str, Any]) -> None:
        self.files.log(record)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit (see train.state); the EMA with its
        standing statistics, which is what `gan-tui sample` draws from."""
        self._ready_ema()
        return run_state.trainer_state(self)

    def _started_event(self) -> Started:
        return Started(
            run_dir=str(self.run_dir), run_name=self.run_dir.name, preset=self.config.preset,
            device=self.dist.describe(), dataset=self.dataset_name, num_images=len(self.data),
            steps_per_epoch=self.steps_per_epoch, epochs=self.config.epochs,
            start_epoch=self.epoch, global_step=self.global_step,
            resumed_from=self._resumed_from, config=self.config.to_dict(),
            history=tuple(self.history))


def _nonfinite(values: dict[str, float]) -> str:
    """'g_loss nan, d_real inf' for the values that are not numbers; '' when all are."""
    return ", ".join(f"{name} {value}" for name, value in values.items()
                     if not math.isfinite(value))
