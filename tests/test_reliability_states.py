"""Training states damaged at random are refused (one line) or passed over for the previous good one;
forged states whose hash a forger recomputed are refused or describe this very run; a torn log line,
a finished run folder, a NaN loss and all-damaged states each end in one clear line, never a traceback."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mardini_core.checkpoint import INTEGRITY, LEGACY_INTEGRITY, integrity_digest, sign_metadata
from mardini_core.config import preset
from mardini_core.errors import CheckpointError, MarDiniError
from mardini_core.training.distributed import Dist
from mardini_core.training.optim import EMA
from mardini_core.training.progress import RunLog
from mardini_core.training.state import latest_state, load_state, open_state, save_state
from support import join, split

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))


def fresh():
    torch.manual_seed(1)
    modules = Tiny()
    optimizer = torch.optim.AdamW(modules.parameters(), lr=1e-3)
    ema = EMA(dict(modules.model.named_parameters()), 0.9)
    return modules, optimizer, ema


@pytest.fixture(scope="module")
def state(workdir):
    """One good training state (after two AdamW steps) and the weights it holds."""
    modules, optimizer, ema = fresh()
    for _ in range(2):
        modules.model(torch.randn(5, 4)).square().mean().backward()
        optimizer.step()
        ema.update()
    folder = workdir / "good"
    folder.mkdir()
    meta = {"schedule": "s", "stage": "{}", "model_config": preset("tiny/T").to_json()}
    save_state(folder, 2, modules, optimizer, ema, meta, Dist(), keep=3)
    path = folder / "state-00000002.safetensors"
    return path, {k: v.clone() for k, v in modules.state_dict().items()}


def resume(path: Path) -> tuple[int, dict]:
    modules, optimizer, ema = fresh()
    step = load_state(path, modules, optimizer, ema)
    return step, modules.state_dict()


def assert_one_line(exc: Exception) -> None:
    assert isinstance(exc, MarDiniError), f"{type(exc).__name__}: {exc}"
    assert len(str(exc).splitlines()) == 1, str(exc)


def test_good_state_resumes_and_newest_damaged_is_passed_over(state, workdir):
    path, weights = state
    step, loaded = resume(path)
    assert step == 2 and all(torch.equal(loaded[k], weights[k]) for k in weights)
    folder = workdir / "two"
    folder.mkdir()
    shutil.copy(path, folder / path.name)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x04  # one flipped bit in the newest state's tensors: no format check sees it, the hash does
    (folder / "state-00000004.safetensors").write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="integrity check"):
        assert latest_state(folder) == folder / path.name


def _resign(header: dict) -> None:
    meta = header["__metadata__"]
    meta[INTEGRITY] = integrity_digest(meta[LEGACY_INTEGRITY], meta)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def forged_groups(draw, groups: list) -> str:
    """param_groups with one entry of one group changed, or replaced by any JSON at all."""
    kind = draw(st.sampled_from(["value", "drop", "json", "params"]))
    groups = json.loads(json.dumps(groups))
    if kind == "json":
        return json.dumps(draw(JSON))
    group = groups[0]
    key = draw(st.sampled_from(sorted(group)))
    if kind == "drop":
        del group[key]
    elif kind == "params":
        group["params"] = draw(st.lists(st.sampled_from(group["params"] + ["model.9.weight"]), max_size=5))
    else:
        group[key] = draw(JSON)
    return json.dumps(groups)


@FUZZ
@given(data=st.data())
def test_damaged_or_forged_states_are_refused_or_harmless(state, workdir, data):
    """Bytes damaged at random (hash not recomputed): refused. Metadata or tensors forged with the hash
    recomputed (a forger's file): refused with one line, or it restores this run's own kind of state."""
    path, weights = state
    raw = path.read_bytes()
    header, body = split(raw)
    kind = data.draw(st.sampled_from(["flip", "truncate", "junk", "meta", "groups", "tensor", "header"]), label="kind")
    signed = kind in ("meta", "groups", "tensor")
    if kind == "flip":
        pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
        out = bytearray(raw)
        out[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        damaged = bytes(out)
    elif kind == "truncate":
        damaged = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    elif kind == "junk":
        pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
        junk = data.draw(st.binary(min_size=1, max_size=16), label="junk")
        damaged = raw[:pos] + junk + raw[pos + len(junk):]
    elif kind == "header":  # the header's structure itself, hash not recomputed
        header = {**header, data.draw(st.text(max_size=5), label="key"): data.draw(JSON, label="value")}
        damaged = join(header, body)
    elif kind in ("meta", "groups"):
        meta = header["__metadata__"]
        if kind == "groups":
            meta["param_groups"] = data.draw(st.composite(lambda d: forged_groups(d, json.loads(meta["param_groups"])))(), label="groups")
        else:
            key = data.draw(st.sampled_from(["step", "model_config", "format", "schedule", "new"]), label="key")
            meta[key] = data.draw(st.one_of(st.text(max_size=12), st.integers(-5, 10**12).map(str), JSON.map(json.dumps)), label="value")
        _resign(header)
        damaged = join(header, body)
    else:  # a tensor replaced by one of another dtype, shape or with NaN, hash recomputed
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(path))
        name = data.draw(st.sampled_from(sorted(tensors)), label="tensor")
        how = data.draw(st.sampled_from(["int", "nan", "shape", "drop", "extra"]), label="how")
        t = tensors[name]
        if how == "int":
            tensors[name] = t.round().to(torch.int64)
        elif how == "nan":
            tensors[name] = torch.full_like(t, float("nan"))
        elif how == "shape":
            tensors[name] = torch.zeros(t.numel() + 1)
        elif how == "drop":
            del tensors[name]
        else:
            tensors["o/model.7.weight/exp_avg"] = torch.zeros(2)
        meta = {k: v for k, v in header["__metadata__"].items() if k not in (INTEGRITY, LEGACY_INTEGRITY)}
        target = workdir / "forged_tensor.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, target, metadata=sign_metadata(tensors, meta))
        damaged = target.read_bytes()
    target = workdir / "damaged" / "state-00000002.safetensors"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(damaged)
    try:
        step, loaded = resume(target)
    except Exception as exc:  # noqa: BLE001 - the property: only our one-line error
        assert_one_line(exc)
        return
    assert signed or damaged == raw, f"{kind}: damaged bytes were accepted"
    assert isinstance(step, int) and step >= 0
    if kind != "tensor":
        assert all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_torn_log_line_on_resume(workdir):
    log = workdir / "log.jsonl"
    log.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.9}\n{"step": 3, "lo')
    with pytest.warns(UserWarning, match="unreadable line"):
        RunLog(log, resume_step=2)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2]


@FUZZ
@given(lines=st.lists(st.one_of(st.text(max_size=30), st.builds(lambda s: json.dumps({"step": s}), st.integers(0, 9)),
                               JSON.map(json.dumps)), max_size=6),
       cut=st.integers(0, 40), resume_step=st.integers(0, 9))
def test_any_damaged_log_resumes(workdir, lines, cut, resume_step):
    text = "\n".join(lines)
    log = workdir / "fuzz_log.jsonl"
    log.write_text(text[: len(text) - cut] if cut < len(text) else text)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        RunLog(log, resume_step)
    kept = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(isinstance(r, dict) and r.get("step", 0) <= resume_step for r in kept)


# --- whole runs (tiny stage 1, one real clip, 4 steps) ------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "clips" / "carphone_pristine.mp4"
needs_clip = pytest.mark.skipif(
    not CLIP.is_file() or not (REPO.parent / "shared" / "weights" / "taef2").is_dir(), reason="needs ../shared clips and TAEF2"
)


def tiny_stage():
    from mardini_core.training.config import load_stage

    cfg = load_stage(REPO / "configs" / "stages" / "tiny_stage1.toml")
    return dataclasses.replace(
        cfg, steps=4, data=dataclasses.replace(cfg.data, paths=(str(CLIP),)),
        checkpoint=dataclasses.replace(cfg.checkpoint, every=2, log_every=1, sample_every=0),
    )


def run_cli(capsys, out: Path, cache: Path, *extra: str) -> tuple[int, list[str]]:
    from mardini_core.cli import main

    config = out.parent / "stage.toml"
    if not config.exists():
        text = (REPO / "configs" / "stages" / "tiny_stage1.toml").read_text()
        config.write_text(text.replace("steps = 40", "steps = 4").replace("every = 10", "every = 2"))
    rc = main(["train", "--config", str(config), "--out", str(out), "--data", str(CLIP), "--cache-dir", str(cache),
               "--threads", "1", "--device", "cpu", *extra])
    return rc, capsys.readouterr().err.strip().splitlines()


@needs_clip
def test_finished_run_folder_is_never_replaced_unasked(tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert run_cli(capsys, out, cache)[0] == 0
    shutil.rmtree(out / "checkpoints")  # a finished model and its log, no checkpoints
    model, log = (out / "model.safetensors").read_bytes(), (out / "log.jsonl").read_bytes()
    rc, err = run_cli(capsys, out, cache)
    assert rc == 2 and len(err) == 1 and "already holds a run" in err[0] and "--overwrite" in err[0], err
    assert (out / "model.safetensors").read_bytes() == model and (out / "log.jsonl").read_bytes() == log
    assert run_cli(capsys, out, cache, "--overwrite")[0] == 0


@needs_clip
def test_resume_with_every_state_damaged_says_so(tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert run_cli(capsys, out, cache)[0] == 0
    for state in (out / "checkpoints").glob("state-*.safetensors"):
        raw = bytearray(state.read_bytes())
        raw[-1] ^= 0x01
        state.write_bytes(bytes(raw))
    with open(out / "log.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # and a torn last line
    rc, err = run_cli(capsys, out, cache, "--resume")
    err = [line for line in err if line.startswith("error:")]
    assert rc == 2 and len(err) == 1 and "every training state" in err[0] and "damaged" in err[0], err


@needs_clip
def test_nan_loss_stops_and_keeps_the_last_good_state(tmp_path, monkeypatch):
    from mardini_core.errors import TrainingError
    from mardini_core.training.trainer import RunOptions, Trainer

    step_fn = Trainer.train_step

    def poisoned(self, step, *batch):
        record = step_fn(self, step, *batch)
        return {**record, "loss": float("nan")} if step == 2 else record  # the third step diverges

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    out = tmp_path / "run"
    trainer = Trainer(tiny_stage(), RunOptions(out, cache_dir=str(tmp_path / "cache"), device="cpu"))
    with pytest.raises(TrainingError, match="step 3: the loss became nan") as info:
        trainer.run()
    assert "state-00000002.safetensors" in str(info.value) and len(str(info.value).splitlines()) == 1
    assert [p.name for p in (out / "checkpoints").glob("state-*.safetensors")] == ["state-00000002.safetensors"]
    assert not (out / "model.safetensors").exists()
    open_state(out / "checkpoints" / "state-00000002.safetensors")  # the good state verifies


@needs_clip
def test_weights_gone_non_finite_after_the_last_check_are_never_written(tmp_path, monkeypatch):
    """The last step's update is not behind any logged loss: the final weights are checked before writing."""
    from mardini_core.errors import TrainingError
    from mardini_core.training import trainer as trainer_module
    from mardini_core.training.trainer import RunOptions, Trainer

    gather = trainer_module.gather_model

    def poisoned(*args, **kwargs):
        state = gather(*args, **kwargs)
        name = sorted(k for k, v in state.items() if v.is_floating_point())[-1]
        state[name] = torch.full_like(state[name], float("inf"))
        return state

    monkeypatch.setattr(trainer_module, "gather_model", poisoned)
    out = tmp_path / "run"
    trainer = Trainer(tiny_stage(), RunOptions(out, cache_dir=str(tmp_path / "cache"), device="cpu"))
    with pytest.raises(TrainingError, match="NaN or infinite values") as info:
        trainer.run()
    assert len(str(info.value).splitlines()) == 1 and not (out / "model.safetensors").exists()


@pytest.mark.parametrize("when", ["before", "after"])
def test_the_run_log_is_never_written_through_a_link(tmp_path, when):
    from mardini_core.errors import OutputError
    from mardini_core.training.progress import RunLog

    outside = tmp_path / "elsewhere.txt"
    log = tmp_path / "run" / "log.jsonl"
    log.parent.mkdir()
    if when == "before":
        log.symlink_to(outside)  # dangling: appending would create the file outside the run
        with pytest.raises(OutputError, match="is a link"):
            RunLog(log, 0)
    else:
        run_log = RunLog(log, 0)
        run_log.write({"step": 1})
        log.unlink()
        log.symlink_to(outside)
        with pytest.raises(OSError):
            run_log.write({"step": 2})
    assert not outside.exists()
