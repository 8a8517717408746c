"""The pretraining loop: any objective on any registered model, resumable and multi-process.

The loop draws each step's augmented views, calls the objective (`facerep.objectives`) for its
loss, steps the optimizer and writes the run (checkpoints, TensorBoard, figures, summary); what
is learned, and how (masks, extra heads), is the objective's. All randomness of a step
(augmentation, and the objective's masks) comes from a generator seeded by (seed, step) and drawn
for the whole global batch, so an interrupted and resumed run, or a run on N processes, replays
exactly the batches of one unbroken single-process run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from facerep.files import atomic_write
from facerep.models.config import ModelConfig
from facerep.models.registry import create_model, model_config
from facerep.objectives.base import PretrainBatch, PretrainObjective, Previews, View
from facerep.objectives.registry import DEFAULT_OBJECTIVE, create_objective
from facerep.outputs import claim_output
from facerep.runs import (
    CONFIG_FILE,
    Preprocess,
    RunConfig,
    load_run_model,
    read_run_config,
    write_run_config,
)
from facerep.train.augment import augment, compose, sample_augment, sample_nudges
from facerep.train.checkpoint import (
    SUMMARY_FILE,
    Checkpoint,
    clear_run,
    load_checkpoint,
    save_checkpoint,
)
from facerep.train.config import TrainConfig
from facerep.train.data import PretrainFaces
from facerep.train.distributed import (
    World,
    barrier,
    data_parallel,
    gather_interleaved,
    init_distributed,
    max_parameter_spread,
    mean_across,
    shutdown,
    training_device,
)
from facerep.train.observe import (
    LOSS_CURVE_FILE,
    TENSORBOARD_DIR,
    TensorBoardLog,
    epoch_means,
    save_loss_curve,
    save_png,
)
from facerep.train.whiten import FACES_PER_COMPONENT, fit_run_whitening
from facerep.whitening import remove_whitening

GRID_FACES = 8
# An objective that logs `embedding_spread` (the per-dimension std of its unit projections) has
# collapsed when it falls below this: every face maps to nearly one point. Spread evenly, 128-D
# unit vectors have about 1/sqrt(128) = 0.088.
COLLAPSED_SPREAD = 0.01
# The step number whose generator draws the preview's randomness (masks): never a training step.
GRID_STEP = 2**63 - 1
WHITENING_SKIPPED = (
    "the {objective} student embeds in its teacher's own space, which a whitening would "
    "distort (`facerep whiten {run}` fits one anyway)"
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class StepInfo:
    """What the progress display shows after each optimizer step."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    lr: float
    images_per_sec: float


@dataclass
class PretrainResult:
    """The outcome of a run: per-step losses, per-epoch means, speed, and where things are."""

    run: Path
    steps: int
    steps_per_epoch: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    images_per_sec: float = 0.0
    parameter_spread: float = 0.0
    figure: Path | None = None  # the objective's preview (reconstructions.png), if it has one
    collapse: str | None = None  # why the embeddings look collapsed, when they do
    # the whitening fitted at the end, or its error, or why the objective fits none
    whitening: dict[str, Any] | None = None


    @property
    def epoch_losses(self) -> list[float]:
        """Mean loss of each completed epoch."""
        return epoch_means(self.losses, self.steps_per_epoch)


def pretrain(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_step: Callable[[StepInfo], None] | None = None,
    stop_after: int | None = None,
) -> PretrainResult:
    """Pretrain `config.model` on `config.datasets` into the run directory `config.out`.

    Args:
        config: the run's configuration (see `TrainConfig`).
        resume: continue from the newest checkpoint in `config.out`.
        overwrite: start afresh even if `config.out` already holds a run (else refused).
        on_step: called on the main process after every step (progress display).
        stop_after: stop (with a checkpoint) once this global step is reached, as an
            interruption would; the schedule still spans `config.epochs`.

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
        ValueError: bad datasets, model name or batch size.
    """
    start = initial_weights(config) if config.init_from and not resume else None
    claim_output(config.out, config.datasets, kind="pretrain", overwrite=overwrite)
    if not resume and not overwrite and (Path(config.out) / CONFIG_FILE).exists():
        raise ValueError(
            f"{config.out} already holds a run: resume it, or pass a new --out "
            "(or --overwrite to start it again)"
        )
    device = training_device()
    world = init_distributed(device)
    try:
        if overwrite and not resume:
            _clear_on_main(Path(config.out), world)
        return _Trainer(config, world, device, resume, start).run(on_step, stop_after)
    finally:
        shutdown(world)


def initial_weights(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The weights of `config.init_from`, checked to fit `config.model` (one-line errors)."""
    source = Path(config.init_from)
    if source.resolve() == Path(config.out).resolve():
        raise ValueError(f"--init-from {source}: that is this run's own folder; use --resume")
    model, run = load_run_model(source)  # one-line errors for a missing or damaged run
    theirs, ours = run.model, model_config(config.model, **config.model_overrides)
    if theirs != ours:
        detail = f" ({_differences(theirs, ours)})" if theirs.name == ours.name else ""
        raise ValueError(
            f"--init-from {source}: its model is {theirs.name}{detail}, this run trains "
            f"{ours.name}"
        )
    return model.state_dict()


def _differences(theirs: ModelConfig, ours: ModelConfig) -> str:
    """`field theirs != ours` for each field where two model configs differ."""
    mine, other = ours.to_dict(), theirs.to_dict()
    return ", ".join(f"{k} {other.get(k)} != {v}" for k, v in mine.items() if other.get(k) != v)


def _clear_on_main(run: Path, world: World) -> None:
    """Remove an earlier run's files from `run` before any process starts writing there."""
    if world.is_main:
        clear_run(run)
    barrier(world)


def resume_config(run: str | Path, **changes: object) -> TrainConfig:
    """The training config saved in RUN, with `changes` (e.g. more `epochs`) applied."""
    return TrainConfig.from_dict({**read_run_config(run).train, **changes, "out": str(run)})


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, floor: float) -> float:
    """Linear warmup to `peak`, then half-cosine decay to `floor` (MAE, per iteration)."""
    if step < warmup_steps:
        return peak * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of one step's randomness, the same on every process and after a resume."""
    mixed = np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed))


def make_optimizer(config: TrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    """The run's optimizer over `groups`: AdamW (MAE's recipe) or SGD with momentum 0.9."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.base_lr_scaled, momentum=0.9)
    return torch.optim.AdamW(groups, lr=config.base_lr_scaled, betas=config.betas)


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices, none on biases, norms and tokens (MAE, timm)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue  # the fixed sin-cos position embeddings
        is_matrix = param.ndim > 1 and not name.endswith("token")
        (decay if is_matrix else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class _Trainer:
    def __init__(
        self,
        config: TrainConfig,
        world: World,
        device: torch.device,
        resume: bool,
        start: dict[str, torch.Tensor] | None = None,
    ):
        if config.threads:
            torch.set_num_threads(config.threads)
        self.config, self.world, self.device = config, world, device
        self.run_dir = Path(config.out)
        torch.manual_seed(config.seed)  # the same initial weights on every process
        self.model = create_model(config.model, **config.model_overrides)
        if start is not None:  # before the objective copies the model (momentum encoders)
            self.model.load_state_dict(start)
        self.model = self.model.to(device)
        self.objective: PretrainObjective = create_objective(
            config.objective, self.model, config.to_dict()
        ).to(device)
        self.data = PretrainFaces(
            config.datasets,
            self.model.config.img_size,
            config.holdout_fraction,
            config.split_seed,
            config.use_all_identities,
            config.teacher,
            config.teacher_views,
            config.teacher_centred,
        )
        self.loader, self.sampler = self._make_loader()
        self.steps_per_epoch = len(self.loader)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.warmup_steps = round(config.warmup_epochs_used * self.steps_per_epoch)
        groups = weight_decay_groups(self.objective, config.weight_decay)
        self.optimizer = make_optimizer(config, groups)
        self.step, self.losses = 0, []
        self._terms: dict[str, float] = {}  # the objective's other scalars of the last step
        if resume:
            self._restore()
        self._saved_step = self.step
        self.preprocess = Preprocess(
            self.model.config.img_size, self.model.config.embed_dim, self.data.padding
        )
        self.mean = torch.tensor(self.preprocess.mean, device=device)[None, :, None, None]
        self.std = torch.tensor(self.preprocess.std, device=device)[None, :, None, None]
        self.grid_imgs, self.grid_landmarks, _ = self.data[:GRID_FACES]
        self._grid_at: tuple[int, np.ndarray] | None = None  # (step, grid): logged, then saved
        self.net = data_parallel(self.objective, world)
        self.log = TensorBoardLog(self.run_dir / TENSORBOARD_DIR) if world.is_main else None
        self._whitening: dict[str, Any] | None = None  # what the end-of-run fit did
        if world.is_main:
            write_run_config(self.run_dir, self._run_config())
            remove_whitening(self.run_dir)  # fitted for weights this run is about to replace

    def _make_loader(self) -> tuple[DataLoader, DistributedSampler]:
        global_batch, world = self.config.batch_size, self.world.size
        if global_batch % world:
            raise ValueError(f"batch size {global_batch} is not divisible by {world} processes")
        if len(self.data) < global_batch:
            raise ValueError(
                f"batch size {global_batch} exceeds the {len(self.data)} faces "
                "available: lower --batch-size"
            )
        # Each process reads its own shard; shards interleave, so together they form the
        # global batches of a single-process run with the same seed.
        sampler = DistributedSampler(
            self.data,
            num_replicas=world,
            rank=self.world.rank,
            shuffle=True,
            seed=self.config.seed,
            drop_last=True,
        )
        loader = DataLoader(
            self.data, batch_size=global_batch // world, sampler=sampler, drop_last=True
        )
        return loader, sampler

    def _restore(self) -> None:
        saved = read_run_config(self.run_dir).train.get("objective", DEFAULT_OBJECTIVE)
        if saved != self.config.objective:
            raise ValueError(
                f"{self.run_dir} was trained with objective {saved}; resuming it with "
                f"{self.config.objective} is refused (start a new --out)"
            )
        checkpoint = load_checkpoint(self.run_dir)
        self.model.load_state_dict(checkpoint.model_state)
        self.objective.load_extra_state(checkpoint.objective_state)
        self.optimizer.load_state_dict(checkpoint.optimizer_state)
        self.step, self.losses = checkpoint.step, checkpoint.losses
        if checkpoint.torch_rng is not None:
            torch.set_rng_state(checkpoint.torch_rng)

    def _run_config(self) -> RunConfig:
        return RunConfig(
            self.model.config,
            self.preprocess,
            self.config.to_dict(),
            [vars(part) for part in self.data.parts],
        )

    def run(self, on_step: Callable[[StepInfo], None] | None, stop_after: int | None):
        start, start_step = time.perf_counter(), self.step
        while self.step < self.total_steps and (stop_after is None or self.step < stop_after):
            epoch = self.step // self.steps_per_epoch
            self.sampler.set_epoch(epoch)
            for index, (imgs, landmarks, faces) in enumerate(self.loader):
                if index < self.step - epoch * self.steps_per_epoch:
                    continue  # done before the resume
                tick = time.perf_counter()
                loss, lr = self._train_step(imgs, landmarks, faces)
                self._after_step(
                    on_step, loss, lr, len(imgs) * self.world.size, time.perf_counter() - tick
                )
                if self.step % self.config.checkpoint_every == 0:
                    self._checkpoint()
                if stop_after is not None and self.step >= stop_after:
                    break
            if self.step % self.steps_per_epoch == 0:
                self._log_grid()
        if self.step != self._saved_step:
            self._checkpoint()
        return self._finish(time.perf_counter() - start, self.step - start_step)

    def _train_step(
        self, imgs: torch.Tensor, landmarks: torch.Tensor, faces: torch.Tensor
    ) -> tuple[float, float]:
        config, world = self.config, self.world
        generator = step_generator(config.seed, self.step)
        views = range(self.objective.num_views)
        batch = PretrainBatch(
            [self._view(imgs, landmarks, faces, generator) for _ in views],
            generator,
            config.batch_size,
            world.rows,
            lambda rows: gather_interleaved(rows, world),
        )
        lr = lr_at(
            self.step, self.total_steps, self.warmup_steps, config.base_lr_scaled, config.min_lr
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._bf16()):
            terms = self.net(batch)
        loss = terms["loss"]
        mean_loss = float(mean_across(loss, world))
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(
                f"loss became {mean_loss} at step {self.step}; stopped, the last good checkpoint "
                f"is kept in {self.run_dir} (try a lower --blr or --precision fp32)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_grad:
            nn.utils.clip_grad_norm_(self.objective.parameters(), config.clip_grad)
        self.optimizer.step()
        self.objective.after_step(self.step)
        self.step += 1
        self.losses.append(mean_loss)
        self._terms = {k: float(v) for k, v in terms.items() if k != "loss"}
        return mean_loss, lr

    def _view(
        self,
        imgs: torch.Tensor,
        landmarks: torch.Tensor,
        faces: torch.Tensor,
        generator: torch.Generator,
    ) -> View:
        """One augmented view of this process's faces, drawn for the whole global batch.

        With a teacher, each face shows one of its fixed views, drawn at random (nudged by
        `teacher_jitter`), and the view carries the teacher's embedding of it.
        """
        config, world = self.config, self.world
        if self.data.teacher is not None:
            teacher = self.data.teacher
            chosen = torch.randint(teacher.views, (config.batch_size,), generator=generator)
            params, target = teacher.pick(faces, chosen[world.rows])
            if config.teacher_jitter > 0:  # drawn only when on: other runs keep their batches
                nudges = sample_nudges(config.batch_size, generator, config.teacher_jitter)
                params = compose(params, nudges.rows(world.rows))
            x, moved = augment(imgs.to(self.device).float() / 255.0, landmarks, params)
            return View((x - self.mean) / self.std, moved, target.to(self.device))
        params = sample_augment(
            config.batch_size,
            generator,
            config.hflip,
            config.scale_jitter,
            config.shift_jitter,
            config.color_jitter,
            rotation=config.rotation_jitter,
            grey=config.greyscale,
            blur=config.blur,
            erase=config.erase,
        )
        x, moved = augment(
            imgs.to(self.device).float() / 255.0, landmarks, params.rows(world.rows)
        )
        return View((x - self.mean) / self.std, moved)

    def _bf16(self) -> bool:
        precision = self.config.precision
        return precision == "bf16" or (precision == "auto" and self.device.type == "cuda")

    def _after_step(self, on_step, loss: float, lr: float, images: int, seconds: float) -> None:
        if not self.world.is_main:
            return
        rate = images / max(seconds, 1e-9)
        if self.log and self.step % self.config.log_every == 0:
            self.log.scalars(self.step, loss=loss, lr=lr, images_per_sec=rate, **self._terms)
        if on_step:
            epoch = (self.step - 1) // self.steps_per_epoch
            on_step(StepInfo(self.step, self.total_steps, epoch, loss, lr, rate))

    def _grid(self) -> np.ndarray | None:
        """The objective's preview of the current weights, computed once per step (or None)."""
        if not isinstance(self.objective, Previews):
            return None
        if self._grid_at is None or self._grid_at[0] != self.step:
            generator = step_generator(self.config.seed, GRID_STEP)  # the same draws every time
            imgs = self.grid_imgs.to(self.device).float() / 255.0
            self.model.eval()
            with torch.no_grad():
                grid = self.objective.preview(
                    imgs, self.grid_landmarks, generator, self.mean, self.std
                )
            self.model.train()
            self._grid_at = (self.step, grid)
        return self._grid_at[1]

    def _log_grid(self) -> None:
        grid = self._grid() if self.log else None
        if grid is not None:
            self.log.image(self.step, self.objective.preview_name, grid)

    def _checkpoint(self) -> None:
        self._saved_step = self.step
        if self.world.is_main:
            save_checkpoint(
                self.run_dir,
                Checkpoint(
                    self.step,
                    self.model.state_dict(),
                    self.optimizer.state_dict(),
                    self.losses,
                    torch.get_rng_state(),
                    self.objective.extra_state(),
                ),
                keep=self.config.keep_checkpoints,
            )

    def _finish(self, seconds: float, steps: int) -> PretrainResult:
        spread = max_parameter_spread(self.model, self.world)
        result = PretrainResult(
            self.run_dir,
            self.step,
            self.steps_per_epoch,
            list(self.losses),
            seconds,
            steps * self.config.batch_size / max(seconds, 1e-9),
            spread,
            collapse=self._collapse(),
        )
        if self.world.is_main:
            grid = self._grid()
            if grid is not None:
                result.figure = self.run_dir / f"{self.objective.preview_name}.png"
                save_png(result.figure, grid)
            save_loss_curve(self.run_dir / LOSS_CURVE_FILE, self.losses, self.steps_per_epoch)
            self._fit_whitening()
            result.whitening = self._whitening
            self._write_summary(result)
            if self.log:
                self.log.close()
        return result

    def _fit_whitening(self) -> None:
        """Fit the run's whitening on its training faces, for the weights just saved.

        A failure leaves the finished run whole (it embeds raw) and is reported in the summary.
        """
        if not self.config.whiten_components or len(self.data) < FACES_PER_COMPONENT:
            return
        if not getattr(self.objective, "fits_whitening", True):
            self._whitening = {"skipped": WHITENING_SKIPPED.format(
                objective=self.config.objective, run=self.run_dir
            )}
            return
        start = time.perf_counter()
        try:
            whitening = fit_run_whitening(
                self.run_dir,
                self.model,
                self.data.imgs,
                self.preprocess,
                components=self.config.whiten_components,
                max_faces=self.config.whiten_faces,
                seed=self.config.seed,
                device=self.device,
            )
        except (ValueError, RuntimeError) as e:
            self._whitening = {"error": f"{type(e).__name__}: {e}"}
            return
        self._whitening = {
            "components": whitening.dim,
            "faces": whitening.faces,
            "seconds": round(time.perf_counter() - start, 1),
        }

    def _collapse(self) -> str | None:
        """A warning when the objective's last logged embedding spread shows a collapse."""
        spread = self._terms.get("embedding_spread")
        if spread is None or spread >= COLLAPSED_SPREAD:
            return None
        advice = getattr(
            self.objective, "collapse_advice", "a lower lr, a larger queue or a higher temperature"
        )
        return (
            f"the embeddings collapsed (spread {spread:.4f} < {COLLAPSED_SPREAD} at step "
            f"{self.step}): every face maps to nearly the same point; try {advice}"
        )

    def _write_summary(self, result: PretrainResult) -> None:
        epochs = result.epoch_losses
        summary = {
            "steps": result.steps,
            "epochs_done": len(epochs),
            "epoch_losses": epochs,
            "loss_fall": 1.0 - epochs[-1] / epochs[0] if len(epochs) > 1 else None,
            "seconds_this_session": round(result.seconds, 1),
            "images_per_sec": round(result.images_per_sec, 1),
            "device": str(self.device),
            "processes": self.world.size,
            "parameter_spread_across_processes": result.parameter_spread,
            "faces": len(self.data),
            **{f"last_{name}": round(value, 5) for name, value in self._terms.items()},
            "collapse": result.collapse,
            "whitening": self._whitening,
        }
        with atomic_write(self.run_dir / SUMMARY_FILE, "w") as f:
            json.dump(summary, f, indent=2)
