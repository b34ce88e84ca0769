"""The training engine: the seed's GAN loop, steerable and observable.

`Trainer` knows nothing of any UI. It emits events (gan_tui.events) to a sink
and, between steps, obeys commands taken from a thread-safe queue. Process-wide
things (device choice, RNG seeding, file writes) live here in one place so a
later multi-process version has one spot to gate on rank 0.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import errno
import math
import os
import queue
import random
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gan_tui import checkpoint as ckpt
from gan_tui.config import TrainConfig
from gan_tui.data import load_digits, to_tensor
from gan_tui.errors import CheckpointError, ConfigError, GanTuiError
from gan_tui.events import (
    CheckpointSaved,
    Command,
    Diverged,
    EpochEnd,
    Error,
    Event,
    Finished,
    Pause,
    Paused,
    Quality,
    Resume,
    Resumed,
    Sample,
    Samples,
    Save,
    Sink,
    Started,
    StepStats,
    Stop,
)
from gan_tui.metrics import (
    EPOCH,
    LOG,
    WINDOW,
    MetricsLog,
    RunningStats,
    prepare_scoring,
    score_digits,
)
from gan_tui.models import NUM_CLASSES, PRESETS, build_models, cycle_labels

__all__ = ["Trainer", "resolve_device", "make_adam", "steps_per_epoch"]

# While paused, wake up this often to notice signals even if no command comes.
_PAUSE_POLL_S = 0.25
# The quality classifier knows MNIST digits only: scores on these datasets mean nothing.
_UNSCORED_DATASETS = ("fashion-mnist", "kmnist")
# What can go wrong while scoring (missing classifier weights, a singular covariance...):
# it turns the scores off, never training.
_SCORING_ERRORS = (GanTuiError, RuntimeError, ValueError, np.linalg.LinAlgError)
_GENERATE_BATCH = 1000  # digits per forward pass when scoring: bounded memory


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit choice must be available."""
    cuda, mps = torch.cuda.is_available(), _mps_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise ConfigError("--device cuda was asked for, but this machine has no usable CUDA GPU "
                          "(use --device cpu or auto)")
    if name == "mps" and not mps:
        raise ConfigError("--device mps was asked for, but Apple's MPS is not available here")
    return torch.device(name)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def make_adam(params: Any, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam with the fused kernel where the device has one, else foreach: same maths."""
    params = list(params)
    for variant in ({"fused": True}, {"foreach": True}):
        try:
            return torch.optim.Adam(params, lr=lr, betas=betas, **variant)
        except (RuntimeError, TypeError, ValueError):
            continue
    return torch.optim.Adam(params, lr=lr, betas=betas)


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Full batches plus the seed's partial last batch, unless it would hold a single
    image (BatchNorm cannot normalise one sample in training mode)."""
    full, rest = divmod(num_images, batch_size)
    return full + (1 if rest >= 2 else 0)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class FiniteBCELoss(nn.BCELoss):
    """The seed's BCELoss, safe when D's output stops being a number.

    BCELoss refuses inputs outside [0, 1], and NaN is outside: a RuntimeError on the CPU,
    a device-side assert that kills the whole CUDA context on a GPU. Here non-finite
    inputs are replaced before the loss and the loss itself becomes NaN, so the step
    completes and the engine reports the divergence from its statistics. For inputs in
    [0, 1] the value and the gradients are exactly BCELoss's.
    """

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        safe = torch.nan_to_num(scores, nan=0.5, posinf=1.0, neginf=0.0)
        # + 0 * sum: exactly +0.0 while all is finite, NaN otherwise; no host sync.
        return super().forward(safe, target) + scores.detach().sum() * 0


# A write failed for want of space: a full disk, a too large file, a full quota.
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _nonfinite(values: dict[str, float]) -> str:
    """'g_loss nan, d_real inf' for the values that are not numbers; '' when all are."""
    return ", ".join(f"{name} {value}" for name, value in values.items()
                     if not math.isfinite(value))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:160]


class Trainer:
    """Train one run of a preset; see the module docstring."""

    def __init__(self, config: TrainConfig, sink: Sink, resume: str | Path | None = None,
                 force: bool = False) -> None:
        self.config = config.validate()
        self.sink = sink
        self.commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._held: collections.deque[Command] = collections.deque()  # see _answer_sample_requests
        self.device = resolve_device(config.device)
        state = self._read_resume(resume, force)
        if config.seed is None:
            config.seed = random.SystemRandom().randrange(2**31)  # recorded, so reproducible
        seed_everything(config.seed)

        digits = load_digits(config.dataset, config.split, config.data_dir, config.limit)
        self.dataset_name = digits.source
        self.data = to_tensor(digits.images, self.device)
        self.labels = torch.from_numpy(digits.labels).to(self.device)
        self.steps_per_epoch = steps_per_epoch(len(self.data), config.batch_size)

        self.generator, self.discriminator = (m.to(self.device) for m in
                                              build_models(config.preset, config.latent_dim))
        self.criterion = FiniteBCELoss()
        betas = (config.beta1, config.beta2)
        self.opt_g = make_adam(self.generator.parameters(), config.lr_g, betas)
        self.opt_d = make_adam(self.discriminator.parameters(), config.lr_d, betas)
        self.conditional = PRESETS[config.preset].conditional
        # An EMA copy of G for samples and scores only; deepcopy draws no random numbers.
        self.generator_ema = self._make_ema() if config.ema > 0 else None
        self._quality_on = (config.quality_samples > 0
                            and config.dataset not in _UNSCORED_DATASETS)

        # Separate generators: showing samples must not change the training trajectory.
        noise_rng = torch.Generator().manual_seed(config.seed + 1)
        self.fixed_noise = torch.randn(config.sample_count, config.latent_dim, generator=noise_rng)
        self.fixed_labels = cycle_labels(config.sample_count) if self.conditional else None
        self._sample_rng = torch.Generator().manual_seed(config.seed + 2)

        self.epoch = 0  # epochs completed
        self.batch = 0  # batches done in the current epoch
        self.global_step = 0
        self.permutation: Tensor | None = None
        self.history: list[dict[str, Any]] = []
        self.stats = RunningStats(self.device)
        self._epoch_seconds = 0.0
        self._resumed_from = str(resume) if resume else None
        self._last_good: tuple[Path, int] | None = None  # newest good checkpoint, its step
        self._diverged: Diverged | None = None
        self._log_failing = False
        self._stop_reason = "stop"
        if state is not None:
            self._load_state(state)

        self.run_dir = self._make_run_dir()
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.samples_dir = self.run_dir / "samples"
        self._prepare_run_dir()

    # ------------------------------------------------------------ commands

    def send(self, command: Command) -> None:
        """Thread-safe and reentrant (SimpleQueue), so signal handlers may call it too."""
        self.commands.put(command)

    def request_stop(self, reason: str = "stop") -> None:
        self.send(Stop(reason))

    # ------------------------------------------------------------- running

    def run(self) -> Finished:
        """Train until the configured epoch count or a Stop; return the Finished event."""
        self._prepare_quality()
        self.emit(self._started_event())
        self._started_at = time.monotonic()
        self._paused_s = 0.0
        try:
            while self.epoch < self.config.epochs:
                if not self._train_epoch() or not self._end_epoch():
                    return self._finish("stopped")
            return self._finish("completed")
        except Exception as exc:
            self._save_after_crash()
            self.emit(Error(f"training failed: {type(exc).__name__}: {exc}", fatal=True))
            raise
        finally:
            self.metrics.close()

    def step(self, real: Tensor, labels: Tensor | None = None) -> None:
        """One step exactly as the seed: D on (real, G(z).detach()), then G through D(G(z)).

        Conditional presets get `labels` for the real batch; their fakes get random
        labels, drawn after the noise (unconditional presets draw nothing extra).
        """
        size = real.size(0)
        noise = torch.randn(size, self.config.latent_dim, device=self.device)
        fake_labels = None
        if labels is not None:
            fake_labels = torch.randint(0, NUM_CLASSES, (size,), device=self.device)
        fake = _call(self.generator, noise, fake_labels)

        fake_score = _call(self.discriminator, fake.detach(), fake_labels)
        d_fake_loss = self.criterion(fake_score, torch.zeros_like(fake_score))
        real_score = _call(self.discriminator, real, labels)
        d_real_loss = self.criterion(real_score, torch.ones_like(real_score))
        d_loss = d_fake_loss + d_real_loss
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()

        # G's backward needs D's input gradients only. D's weight gradients from it
        # were never read (opt_d.zero_grad() drops them before D's next backward), so
        # they are not computed: three fewer matrix products a step, no number changed.
        d_params = [p for p in self.discriminator.parameters() if p.requires_grad]
        for p in d_params:
            p.requires_grad_(False)
        try:
            fake_g_score = _call(self.discriminator, fake, fake_labels)
        finally:
            for p in d_params:
                p.requires_grad_(True)
        g_loss = self.criterion(fake_g_score, torch.ones_like(fake_g_score))
        self.opt_g.zero_grad()
        g_loss.backward()
        self.opt_g.step()
        if self.generator_ema is not None:
            self._update_ema()

        with torch.no_grad():
            step_stats = torch.stack([g_loss, d_loss, real_score.mean(), fake_score.mean()])
        self.stats.add(step_stats, size)

    def _train_epoch(self) -> bool:
        """Run the rest of the current epoch; False when a Stop arrived."""
        if self.permutation is None:
            self.permutation = torch.randperm(len(self.data), device=self.device)
            self.stats.reset(EPOCH)
            self._epoch_seconds = 0.0
        self._reset_window()
        size = self.config.batch_size
        while self.batch < self.steps_per_epoch:
            if not self._obey_pending():
                return False
            step_began = time.monotonic()
            indices = self.permutation[self.batch * size:(self.batch + 1) * size]
            self.step(self.data[indices], self.labels[indices] if self.conditional else None)
            self.batch += 1
            self.global_step += 1
            self._epoch_seconds += time.monotonic() - step_began
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
        return time.monotonic() - self._started_at - self._paused_s

    def _end_epoch(self) -> bool:
        """Record the epoch, show and save it; False when training should stop (diverged).

        Losses can stay finite while the weights overflow (BCE clamps its logs), so the
        weights are checked here too, once an epoch.
        """
        means = self.stats.means(EPOCH)
        bad = _nonfinite(means) or self._weights_problem()
        if bad and not self._diverge(bad):
            return False
        seconds = self._epoch_seconds
        img_per_s = self.stats.images[EPOCH] / max(seconds, 1e-9)
        record = {"event": "epoch", "epoch": self.epoch + 1, "step": self.global_step, **means,
                  "img_per_s": img_per_s, "seconds": seconds}
        self.history.append(record)
        self._log(record)
        self.emit(EpochEnd(epoch=self.epoch, epochs=self.config.epochs,
                           global_step=self.global_step, img_per_s=img_per_s, seconds=seconds,
                           **means))
        images = self.generate(self.fixed_noise, self.fixed_labels)
        self._save_sample_grid(images, self.samples_dir / f"epoch_{self.epoch + 1:04d}.png")
        self.emit(Samples(self.epoch, self.global_step, images, fixed=True,
                          labels=_label_tuple(self.fixed_labels)))
        # The epoch's end takes ~0.1 s (scores, the save): answer sample requests in between.
        self._answer_sample_requests()
        if self._quality_on:
            self._score_quality()
            self._answer_sample_requests()

        self.epoch += 1
        self.batch = 0
        self.permutation = None
        saved = self.save("epoch")
        if saved is not None and self.epoch % self.config.checkpoint_every == 0:
            self._keep_copy(saved, self.checkpoint_dir / f"epoch_{self.epoch:04d}.pt")
        return True

    def _finish(self, reason: str) -> Finished:
        if self._diverged is None and (problem := self._weights_problem()):
            self._report_divergence(problem)
        if self._diverged is not None:  # nothing is saved over the last good checkpoint
            reason = "diverged"
        elif reason == "stopped":
            self.save(self._stop_reason)
        elif self._last_good is None or self._last_good[1] != self.global_step:
            self.save("final")  # the final epoch's save failed: one more try
        last = self._last_good
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
        config.on_divergence says. True when the user resumed training."""
        self._report_divergence(what)
        if self.config.on_divergence == "pause":
            return self._wait_while_paused()
        return False

    def _report_divergence(self, what: str) -> None:
        last = self._last_good
        kept = (f"nothing was saved over the last good checkpoint {last[0]} (step {last[1]})"
                if last else "no checkpoint of this run had been saved yet")
        self._diverged = Diverged(
            epoch=self.epoch, global_step=self.global_step,
            message=f"training diverged at step {self.global_step}, in epoch "
                    f"[{self.epoch}/{self.config.epochs}] ({what}); {kept}",
            checkpoint=str(last[0]) if last else None)
        self.emit(self._diverged)

    def _may_resume(self) -> bool:
        """After a divergence, training resumes only while the weights are numbers."""
        problem = self._weights_problem()
        if problem:
            self.emit(Error(f"cannot resume: {problem}; quit and go on from the last good "
                            f"checkpoint with lower learning rates ({self._kept()})",
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

    def _kept(self) -> str:
        last = self._last_good
        return (f"the last good checkpoint is {last[0]} (step {last[1]})" if last
                else "no checkpoint of this run is saved yet")

    # -------------------------------------------------- obeying commands

    def _obey_pending(self) -> bool:
        """Obey every queued command; False when training should stop."""
        while (command := self._next_command()) is not None:
            if not self._obey(command):
                return False
        return True

    def _next_command(self, timeout: float = 0.0) -> Command | None:
        """The next command (any held back while an epoch ended first), or None if none
        comes within `timeout` seconds."""
        if self._held:
            return self._held.popleft()
        try:
            return self.commands.get(timeout=timeout) if timeout else self.commands.get_nowait()
        except queue.Empty:
            return None

    def _answer_sample_requests(self) -> None:
        """Draw requested samples now; hold every other command for the next step.

        Called while an epoch ends: a save (or a pause, during which one may be asked
        for) must not land between an epoch's last step and its record, or a resume
        would end that epoch twice.
        """
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            if isinstance(command, Sample):
                self._emit_fresh_samples(command)
            else:
                self._held.append(command)

    def _obey(self, command: Command) -> bool:
        if isinstance(command, Stop):
            self._stop_reason = command.reason
            return False
        if isinstance(command, Pause):
            return self._wait_while_paused()
        if isinstance(command, Save):
            path = self.save(command.reason)
            if path is not None and command.reason == "request":
                self._keep_copy(path, self.checkpoint_dir / f"step_{self.global_step:07d}.pt")
        elif isinstance(command, Sample):
            self._emit_fresh_samples(command)
        return True  # Resume while running: nothing to do

    def _wait_while_paused(self) -> bool:
        if self.stats.images[WINDOW]:  # steps since the last stats: show where it stopped
            self.emit(self._step_stats(time.monotonic()))
            self._reset_window()
        self.emit(Paused(self.global_step))
        paused_at = time.monotonic()
        try:
            while True:
                command = self._next_command(timeout=_PAUSE_POLL_S)
                if command is None:
                    continue
                if isinstance(command, Resume):
                    if self._diverged is not None and not self._may_resume():
                        continue
                    self.emit(Resumed(self.global_step))
                    return True
                if not isinstance(command, Pause) and not self._obey(command):
                    return False
        finally:
            self._paused_s += time.monotonic() - paused_at
            self._reset_window()

    def _emit_fresh_samples(self, command: Sample) -> None:
        count = command.count or self.config.sample_count
        if command.digit is not None and not 0 <= command.digit < NUM_CLASSES:
            self.emit(Error(f"no digit {command.digit}: choose 0-9", fatal=False))
            return
        noise = torch.randn(count, self.config.latent_dim, generator=self._sample_rng)
        labels = None
        if self.conditional:  # unconditional presets ignore `digit`
            labels = (cycle_labels(count) if command.digit is None
                      else torch.full((count,), command.digit, dtype=torch.long))
        self.emit(Samples(self.epoch, self.global_step, self.generate(noise, labels),
                          fixed=False, labels=_label_tuple(labels)))

    # -------------------------------------------------- EMA and quality

    def _make_ema(self) -> nn.Module:
        ema = copy.deepcopy(self.generator).eval()
        ema.requires_grad_(False)
        return ema

    @torch.no_grad()
    def _update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * G; BatchNorm statistics are copied as they are.

        The decay warms up as (1 + t) / (10 + t) so early samples do not show the random
        initial weights for the first thousand steps of a short run.
        """
        assert self.generator_ema is not None
        decay = min(self.config.ema, (1 + self.global_step) / (10 + self.global_step))
        ema_params = list(self.generator_ema.parameters())
        params = [p.detach() for p in self.generator.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for ema_buf, buf in zip(self.generator_ema.buffers(), self.generator.buffers(),
                                strict=True):
            ema_buf.copy_(buf)

    def _prepare_quality(self) -> None:
        """Load the scorer before the first step: loaded at the first epoch's end, it held
        up training and key presses for ~0.4 s."""
        if not self._quality_on:
            return
        try:
            prepare_scoring(self.device)
        except Exception as exc:  # e.g. an unreadable weights file: scores are optional
            self._quality_off(exc)

    def _quality_off(self, exc: Exception) -> None:
        # e.g. the classifier's weights are missing: a score must never stop training
        self._quality_on = False
        self.emit(Error(f"quality scores off: {exc}", fatal=False))

    def _score_quality(self) -> None:
        """Score `quality_samples` digits; the same noise every epoch, so epochs compare."""
        began = time.monotonic()
        count = self.config.quality_samples
        # Own generator, seeded per run: scoring never touches the training RNG.
        rng = torch.Generator().manual_seed(self.config.seed + 3)
        noise = torch.randn(count, self.config.latent_dim, generator=rng)
        labels = cycle_labels(count) if self.conditional else None
        try:
            scores = score_digits(self._generate_tensor(noise, labels), self.device)
        except _SCORING_ERRORS as exc:
            self._quality_off(exc)
            return
        seconds = time.monotonic() - began
        self._log({"event": "quality", "epoch": self.epoch + 1, "step": self.global_step,
                   "fid": scores.fid, "score": scores.score, "coverage": scores.coverage,
                   "confidence": scores.confidence, "histogram": list(scores.histogram),
                   "samples": count, "seconds": seconds})
        self.emit(Quality(epoch=self.epoch, global_step=self.global_step, fid=scores.fid,
                          score=scores.score, coverage=scores.coverage,
                          confidence=scores.confidence, histogram=scores.histogram,
                          samples=count, seconds=seconds))

    # ------------------------------------------------------------ outputs

    def emit(self, event: Event) -> None:
        self.sink(event)

    def generate(self, noise: Tensor, labels: Tensor | None = None) -> np.ndarray:
        """Digits for `noise` (and class `labels` for conditional presets) in eval mode
        (BatchNorm running stats), from the EMA generator when there is one, as float32
        N x 28 x 28."""
        return self._generate_tensor(noise, labels).squeeze(1).float().cpu().numpy()

    @torch.no_grad()
    def _generate_tensor(self, noise: Tensor, labels: Tensor | None = None) -> Tensor:
        model = self.generator_ema if self.generator_ema is not None else self.generator
        was_training = model.training
        model.eval()
        try:
            parts = []
            for start in range(0, len(noise), _GENERATE_BATCH):
                stop = start + _GENERATE_BATCH
                chunk_labels = None if labels is None else labels[start:stop].to(self.device)
                parts.append(_call(model, noise[start:stop].to(self.device), chunk_labels))
            return torch.cat(parts)
        finally:
            model.train(was_training)

    def _save_sample_grid(self, images: np.ndarray, path: Path) -> None:
        from torchvision.utils import save_image

        try:
            tensor = torch.from_numpy(images).unsqueeze(1)
            save_image(tensor * 0.5 + 0.5, path, nrow=4, padding=2)  # seed: 4 x 4 grid
        except OSError as exc:
            self.emit(Error(f"could not write {path}: {exc.strerror or exc}", fatal=False))

    def save(self, reason: str) -> Path | None:
        """Atomically write checkpoints/last.pt; report failure without stopping training."""
        path = self.checkpoint_dir / "last.pt"
        problem = self._weights_problem()
        if self._diverged is not None or problem:
            self.emit(Error(f"not saving {path}: {problem or 'training diverged'}; "
                            f"{self._kept()}", fatal=False))
            return None
        try:
            ckpt.save_atomic(self.state_dict(), path)
        except OSError as exc:
            hint = ("; free some space, the next save tries again"
                    if exc.errno in _DISK_FULL else "")
            self.emit(Error(f"could not save {path}: {exc.strerror or exc}; {self._kept()}"
                            f"{hint}", fatal=False))
            return None
        self._last_good = (path, self.global_step)
        self.emit(CheckpointSaved(str(path), self.epoch, self.global_step, reason))
        return path

    def _log(self, record: dict[str, Any]) -> None:
        """A metrics.jsonl line; a failed write is reported once, training goes on."""
        error = self.metrics.write(record)
        if error is not None and not self._log_failing:
            self.emit(Error(f"could not write {self.metrics.path}: "
                            f"{error.strerror or error}; training goes on", fatal=False))
        self._log_failing = error is not None

    def _keep_copy(self, source: Path, target: Path) -> None:
        """A hard link costs no space or time, and later replaces of last.pt leave it intact."""
        try:
            target.unlink(missing_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        except OSError as exc:
            self.emit(Error(f"could not write {target}: {exc.strerror or exc}", fatal=False))
            return
        self.emit(CheckpointSaved(str(target), self.epoch, self.global_step, "kept"))

    # --------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit, in weights_only-safe types."""
        mid_epoch = self.permutation is not None and self.batch > 0
        return {
            "format": ckpt.FORMAT,
            "config": self.config.to_dict(),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            **({"generator_ema": self.generator_ema.state_dict()}
               if self.generator_ema is not None else {}),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch if mid_epoch else 0,
            "global_step": self.global_step,
            "permutation": self.permutation.cpu() if mid_epoch else None,
            "epoch_stats": self.stats.epoch_state() if mid_epoch else None,
            "epoch_seconds": self._epoch_seconds if mid_epoch else 0.0,
            "fixed_noise": self.fixed_noise,
            "sample_rng": self._sample_rng.get_state(),
            "rng": ckpt.capture_rng(),
            "history": list(self.history),
            "torch_version": str(torch.__version__),
            "saved_at": datetime.now().isoformat(timespec="seconds"),
        }

    def _read_resume(self, resume: str | Path | None, force: bool) -> dict[str, Any] | None:
        if resume is None:
            return None
        state = ckpt.load_checkpoint(resume)
        saved = ckpt.config_of(state, resume)
        differences = self.config.differences(saved)
        if differences and not force:
            raise CheckpointError(f"{resume} was trained with a different setup "
                                  f"({'; '.join(differences)}); pass --force to resume anyway")
        if self.config.seed is None:
            self.config.seed = saved.seed
        return state

    def _load_state(self, state: dict[str, Any]) -> None:
        try:
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            if self.generator_ema is not None:  # a run that had no EMA starts it from G
                self.generator_ema.load_state_dict(state.get("generator_ema")
                                                   or self.generator.state_dict())
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{self._resumed_from}: weights do not fit this preset "
                                  f"({_first_line(exc)})") from None
        try:
            self._load_progress(state)
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise CheckpointError(f"{self._resumed_from}: damaged checkpoint "
                                  f"({_first_line(exc)})") from None
        self._last_good = (Path(str(self._resumed_from)).absolute(), self.global_step)
        # Adam keeps lr and betas in the state just loaded; the config decides them, so
        # `--resume X --lr-g 5e-5` really trains on with the lower rate.
        betas = (self.config.beta1, self.config.beta2)
        for optimizer, lr in ((self.opt_g, self.config.lr_g), (self.opt_d, self.config.lr_d)):
            for group in optimizer.param_groups:
                group["lr"], group["betas"] = lr, betas

    def _load_progress(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.batch = int(state.get("batch", 0))
        self.global_step = int(state["global_step"])
        self.fixed_noise = state["fixed_noise"]
        if self.fixed_noise.ndim != 2 or self.fixed_noise.shape[1] != self.config.latent_dim:
            raise ValueError(f"fixed noise of shape {tuple(self.fixed_noise.shape)}")
        self.history = list(state["history"])
        permutation = state.get("permutation")
        if permutation is not None and len(permutation) != len(self.data):
            self.batch = 0  # the data changed (--force): the epoch starts over on the new data
        elif permutation is not None:
            self.permutation = permutation.to(self.device)
            self.stats.load_epoch_state(state["epoch_stats"])
            self._epoch_seconds = float(state.get("epoch_seconds", 0.0))
        if state.get("sample_rng") is not None:
            self._sample_rng.set_state(state["sample_rng"])
        ckpt.restore_rng(state["rng"])

    # ------------------------------------------------------------ run dir

    def _make_run_dir(self) -> Path:
        """Absolute, so the paths in messages (and the resume hint) work from anywhere."""
        if self.config.run_dir:
            return Path(self.config.run_dir).absolute()
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path(self.config.runs_root).absolute() / f"{stamp}-{self.config.preset}"
        candidate, n = base, 2
        while candidate.exists():  # two runs started in the same second
            candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
        return candidate

    def _prepare_run_dir(self) -> None:
        try:
            for folder in (self.run_dir, self.checkpoint_dir, self.samples_dir):
                folder.mkdir(parents=True, exist_ok=True)
            self.config.save(self.run_dir / "config.json")
            self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        except OSError as exc:
            raise ConfigError(f"cannot use run directory {self.run_dir}: "
                              f"{exc.strerror or exc}") from None
        ckpt.remove_stale_temps(self.checkpoint_dir)

    def _started_event(self) -> Started:
        return Started(
            run_dir=str(self.run_dir), run_name=self.run_dir.name, preset=self.config.preset,
            device=str(self.device), dataset=self.dataset_name, num_images=len(self.data),
            steps_per_epoch=self.steps_per_epoch, epochs=self.config.epochs,
            start_epoch=self.epoch, global_step=self.global_step,
            resumed_from=self._resumed_from, config=self.config.to_dict(),
            history=tuple(self.history))


def _call(model: nn.Module, x: Tensor, labels: Tensor | None) -> Tensor:
    """model(x), or model(x, labels) for a conditional preset."""
    return model(x) if labels is None else model(x, labels)


def _label_tuple(labels: Tensor | None) -> tuple[int, ...] | None:
    return None if labels is None else tuple(int(v) for v in labels.tolist())
