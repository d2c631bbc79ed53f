"""A training stage as data: one TOML file per stage, read into frozen dataclasses.

Sections: [stage] (name, steps, seed), [model], [data], [masks], [train], [optim], [checkpoint].
Every key has a default; an unknown key or a wrong type is a ConfigError naming it, so a typo never
silently trains something else. Relative data paths are taken from the config file's folder.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ANCHORS, ATTENTION_MODES
from ..errors import ConfigError
from ..schema import SEED_MAX, check_ranges, finite_number, ranged

LOSSES = ("reconstruction", "diffusion_uncond", "diffusion", "pixel")
NETWORKS = ("planner", "generator")
LAYOUTS = ("random", "interpolation", "prefix")


@dataclass(frozen=True)
class ModelSection:
    preset: str = "tiny/ST"  # used when the run does not start from --init
    attention: str = "ST"  # generator attention in this stage; a /ST --init is switched to /T here
    anchor: str = ""  # what the DM diffuses masked latents around: "none" (the paper), "neighbours" or "flow"; "" keeps the --init model's (or the preset's)
    gradient_checkpointing: bool = False
    backend: str = "auto"


@dataclass(frozen=True)
class DataSection:
    paths: tuple[str, ...] = ()
    frames: int = ranged(9, 2, 1024)
    stride: int = ranged(1, 1, 1024)
    height: int = ranged(64, 1, 16384)
    width: int = ranged(64, 1, 16384)
    crop: str = "random"
    vae: str = "taef2"
    cache_latents: bool = True  # loader "latents": encode each clip once into <run>/latents (fixes random crops per clip)
    loader: str = "latents"  # "latents": clips encoded once; "frames": every video decoded once into memory, fresh clips encoded every step (data/frames.py; needed for "flow"); "shards": paths are folders of latent shards written by `encode` (data/shards.py), no video is decoded
    shard_buffer: int = ranged(4, 1, 1 << 20)  # loader "shards": clips are shuffled within runs of this many shards (shard order is shuffled every epoch)
    stride_max: int = ranged(0, 0, 1024)  # loader "frames": strides drawn from stride..stride_max (0 = stride only)
    short_side: int = ranged(0, 0, 16384)  # loader "frames": videos shrunk to this short side before crops are cut (0 = just over the crop); the eval scores at 256, so crops of a 256 frame train at the scale of its motion
    synthetic: float = ranged(0.0, 0, 1)  # loader "frames": fraction of clips replaced by synthetic motion over their frames (data/synthetic.py)
    held_out: bool = False  # leave out the project's held-out files (data/split.py)


@dataclass(frozen=True)
class MaskSection:
    """Fraction of frames masked (generated): drawn uniformly from a range that moves linearly from
    `ratio_start` at the first step to `ratio_end` at the last. Layouts say where kept frames sit."""

    layouts: dict = field(default_factory=lambda: {"random": 1.0})
    ratio_start: tuple[float, float] = (0.15, 0.6)
    ratio_end: tuple[float, float] = (0.15, 0.6)


@dataclass(frozen=True)
class TrainSection:
    losses: tuple[str, ...] = ("diffusion",)
    networks: tuple[str, ...] = NETWORKS
    uncond_prob: float = ranged(0.1, 0, 1)  # eq. 3: Z_cond replaced by Z_uncond 1 time in 10
    regression: float = ranged(0.0, 0, 1)  # fraction of clips trained at t = 1, where the v target is minus the residual: a regression that the first sampling step (fidelity) reads


@dataclass(frozen=True)
class OptimSection:
    lr: float = ranged(1.4e-4, 0, 1, above=True)
    warmup: int = ranged(1000, 0, 10**9)
    batch: int = ranged(4, 1, 1 << 16)  # clips per process and step
    weight_decay: float = ranged(0.0, 0, 10)
    grad_clip: float = ranged(1.0, 0, 1e6, above=True)  # the gradient norm's ceiling (0 would zero every step, < 0 reverse it)
    ema: float = ranged(0.0, 0, 0.999999)  # EMA decay; 0 = off
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32


@dataclass(frozen=True)
class CheckpointSection:
    every: int = ranged(1000, 1, 10**9)  # steps between training-state checkpoints
    keep: int = ranged(2, 1, 1000)  # training-state files kept
    sample_every: int = ranged(0, 0, 10**9)  # steps between preview samples; 0 = off
    sample_steps: int = ranged(10, 1, 10_000)  # DDIM steps of a preview
    log_every: int = ranged(10, 1, 10**9)


CLIP_FIELDS = ("frames", "stride", "height", "width")  # of [data]; a phase changes these and [optim] batch


@dataclass(frozen=True)
class Phase:
    """From step `start` on, the stage trains on clips of another length, frame rate (stride) or size,
    and with another number of clips per step (the paper adapts its batch to each, Appendix B);
    0 keeps the [data] / [optim] value. A `[[phases]]` table of the stage TOML."""

    start: int = ranged(dataclasses.MISSING, 1, 10**9)
    frames: int = ranged(0, 0, 1024)
    stride: int = ranged(0, 0, 1024)
    height: int = ranged(0, 0, 16384)
    width: int = ranged(0, 0, 16384)
    batch: int = ranged(0, 0, 1 << 16)


@dataclass(frozen=True)
class StageConfig:
    name: str = "stage"
    steps: int = ranged(1000, 1, 10**9)
    seed: int = ranged(0, 0, SEED_MAX)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    masks: MaskSection = field(default_factory=MaskSection)
    train: TrainSection = field(default_factory=TrainSection)
    optim: OptimSection = field(default_factory=OptimSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    phases: tuple[Phase, ...] = ()  # the resolution / length / frame-rate schedule within the stage, by first step

    def __post_init__(self) -> None:
        _validate(self)
        _validate_phases(self)

    def phase(self, step: int) -> tuple[int, StageConfig]:
        """(first step, settings) of the phase in force at `step`: this config with the [data] and
        [optim] batch values of every phase started by then, and no phases of its own."""
        started = [p for p in self.phases if p.start <= step]
        data, batch = self.data, self.optim.batch
        for p in started:
            data = dataclasses.replace(data, **{k: getattr(p, k) for k in CLIP_FIELDS if getattr(p, k)})
            batch = p.batch or batch
        view = dataclasses.replace(self, data=data, optim=dataclasses.replace(self.optim, batch=batch), phases=())
        return (started[-1].start if started else 0), view

    @property
    def max_frames(self) -> int:
        """The longest clip of any phase (the model's window must hold it)."""
        return max([self.data.frames] + [self.phase(p.start)[1].data.frames for p in self.phases])

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def schedule_json(self) -> str:
        """Everything that decides the weights (not where or how often files are written)."""
        raw = dataclasses.asdict(self)
        for key in ("checkpoint",):
            raw.pop(key)
        raw["data"].pop("paths")
        return json.dumps(raw, sort_keys=True)


def _validate(cfg: StageConfig) -> None:
    def bad(msg: str) -> ConfigError:
        return ConfigError(f"stage config {cfg.name!r}: {msg}")

    check_ranges(cfg, "stage", skip=("phases",))  # phases: after their own checks (_validate_phases)

    if cfg.model.attention not in ATTENTION_MODES:
        raise bad(f"model.attention must be one of {ATTENTION_MODES}, got {cfg.model.attention!r}")
    if cfg.model.anchor not in ("", *ANCHORS):
        raise bad(f"model.anchor must be one of {ANCHORS} (or left out to keep the --init model's), got {cfg.model.anchor!r}")
    if unknown := set(cfg.train.losses) - set(LOSSES):
        raise bad(f"train.losses has unknown {sorted(unknown)}; choose from {LOSSES}")
    if not cfg.train.losses:
        raise bad("train.losses is empty; name at least one of " + ", ".join(LOSSES))
    if "diffusion" in cfg.train.losses and "diffusion_uncond" in cfg.train.losses:
        raise bad("use either 'diffusion' (joint, eq. 3) or 'diffusion_uncond' (generator alone, eq. 1), not both")
    if unknown := set(cfg.train.networks) - set(NETWORKS):
        raise bad(f"train.networks has unknown {sorted(unknown)}; choose from {NETWORKS}")
    if not cfg.train.networks:
        raise bad("train.networks is empty; name planner, generator or both")
    if unknown := set(cfg.masks.layouts) - set(LAYOUTS):
        raise bad(f"masks.layouts has unknown {sorted(unknown)}; choose from {LAYOUTS}")
    weights = list(cfg.masks.layouts.values())
    if not weights or not all(finite_number(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise bad("masks.layouts needs finite, non-negative weights with a positive sum")
    for name in ("ratio_start", "ratio_end"):
        pair = getattr(cfg.masks, name)
        if len(pair) != 2 or not all(finite_number(x) for x in pair):
            raise bad(f"masks.{name} must be [low, high], two numbers, got {list(pair)}")
        lo, hi = pair
        if not 0 <= lo <= hi <= 1:
            raise bad(f"masks.{name} must be [low, high] with 0 <= low <= high <= 1, got {[lo, hi]}")
    if cfg.data.loader not in ("latents", "frames", "shards"):
        raise bad(f"data.loader must be 'latents', 'frames' or 'shards', got {cfg.data.loader!r}")
    if "pixel" in cfg.train.losses and (cfg.model.anchor not in ("", "flow") or "diffusion" not in cfg.train.losses):
        raise bad("the 'pixel' loss scores a flow-anchored model's assembled frames: set [model] anchor = \"flow\" and keep 'diffusion'")
    if cfg.model.anchor == "flow" and cfg.data.loader != "frames":
        raise bad("a flow-anchored model trains from pixels: set [data] loader = \"frames\"")
    if cfg.data.stride_max and cfg.data.stride_max < cfg.data.stride:
        raise bad(f"data.stride_max ({cfg.data.stride_max}) must be 0 or at least data.stride ({cfg.data.stride})")
    if cfg.optim.precision not in ("auto", "bf16", "fp32"):
        raise bad(f"optim.precision must be auto, bf16 or fp32, got {cfg.optim.precision!r}")


def _validate_phases(cfg: StageConfig) -> None:
    starts = [p.start for p in cfg.phases]
    if starts != sorted(set(starts)) or (starts and starts[0] < 1):  # a phase from `steps` on is never reached (a shortened run)
        raise ConfigError(f"stage config {cfg.name!r}: [[phases]] need increasing start steps from 1 on "
                          f"(step 0 is the [data] section), got {starts}")
    for p in cfg.phases:
        if negative := [k for k in (*CLIP_FIELDS, "batch") if getattr(p, k) < 0]:
            raise ConfigError(f"stage config {cfg.name!r}: the phase from step {p.start} has negative {negative}; use 0 to keep a value")
        check_ranges(p, f"phases from step {p.start}")
        if cfg.data.loader == "shards" and any(getattr(p, k) for k in CLIP_FIELDS):
            raise ConfigError(f"stage config {cfg.name!r}: the phase from step {p.start} changes the clips, but latent shards fix their "
                              "frames, stride and size when encoded; a phase may change only batch, or train the new clips as a stage of their own")
        try:
            cfg.phase(p.start)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in the phase from step {p.start})") from None


def _coerce(cls, raw: dict, where: str):
    """dict from TOML -> dataclass `cls`, with unknown keys and wrong types reported by name."""
    if not isinstance(raw, dict):
        raise ConfigError(f"[{where}] must be a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := set(raw) - names:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in [{where}]; known: {sorted(names)}")
    values = {}
    for key, value in raw.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _coerce(hint, value, key)
            continue
        origin = typing.get_origin(hint) or hint
        item = typing.get_args(hint)[0] if origin is tuple else None
        if dataclasses.is_dataclass(item) and isinstance(value, list):  # an array of tables, e.g. [[phases]]
            values[key] = tuple(_coerce(item, v, f"[{key}] #{i + 1}") for i, v in enumerate(value))
            continue
        ok = isinstance(value, list) if origin is tuple else isinstance(value, origin) and not (origin is int and isinstance(value, bool))
        if origin is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(f"[{where}] {key} must be {getattr(origin, '__name__', origin)}, got {value!r}")
        if item is str and not all(isinstance(v, str) for v in value):  # numbers are checked by _validate, built or parsed
            raise ConfigError(f"[{where}] {key} must be a list of names, got {value!r}")
        values[key] = tuple(value) if origin is tuple else value
    return cls(**values)


def apply_override(raw: dict, assignment: str) -> None:
    """Set one `section.key=value` (TOML value; a bare word is a string) in a stage's raw TOML dict.

    Lets one config serve a CPU and a GPU run (`--set optim.batch=24 --set data.height=256`) without
    a copy of the file per machine. The result is validated like the file itself.
    """
    dotted, eq, text = assignment.partition("=")
    section, dot, key = dotted.strip().partition(".")
    if not eq or not dot or not key:
        raise ConfigError(f"--set {assignment!r}: write section.key=value, e.g. --set optim.batch=24")
    tables = {f.name for f in dataclasses.fields(StageConfig) if dataclasses.is_dataclass(typing.get_type_hints(StageConfig)[f.name])}
    if section not in tables | {"stage"}:
        raise ConfigError(f"--set {assignment!r}: unknown section {section!r}; known: {sorted(tables | {'stage'})}")
    if (section, key) == ("data", "paths"):
        raise ConfigError("--set data.paths: give the data with --data instead (paths relative to where you run)")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    if section == "stage":  # [stage] keys may also stand at the top of the file; the override replaces either
        raw.get("stage", {}).pop(key, None)
        raw[key] = value
    else:
        raw.setdefault(section, {})[key] = value


def load_stage(path: str | os.PathLike, overrides: typing.Sequence[str] = ()) -> StageConfig:
    """Read a stage TOML, with `section.key=value` overrides applied (apply_override); data paths are
    resolved (env vars expanded) relative to the file's folder."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a FIFO whose read would wait for ever
        raise ConfigError(f"stage config {path} is not a regular file; give a .toml file (see configs/stages/)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"stage config {path} does not exist; see configs/stages/ for examples") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({type(exc).__name__}: {str(exc)[:200]})") from None
    for assignment in overrides:
        apply_override(raw, assignment)
    top = raw.pop("stage", {})
    cfg = _coerce(StageConfig, {**top, **raw}, path.name)
    paths = tuple(str((path.parent / os.path.expandvars(p)).resolve()) for p in cfg.data.paths)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, paths=paths))
