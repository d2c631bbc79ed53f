"""`torchrun` on CPU (gloo): FSDP2 and replicate runs agree and load in one process; two 'nodes' (two
launchers meeting at a c10d rendezvous, as the README's multi-node lines) chain the three stages and
resume a killed stage to the weights of an uninterrupted chain."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mardini_core.checkpoint import load_checkpoint
from mardini_core.data import shared_dir
from mardini_core.training.config import load_stage
from mardini_core.training.trainer import RunOptions, Trainer

REPO = Path(__file__).resolve().parents[1]
CLIPS = shared_dir() / "data" / "clips"
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
pytestmark = pytest.mark.skipif(
    not (CLIPS.is_dir() and (shared_dir() / "weights" / "taef2").is_dir() and Path(TORCHRUN).exists()),
    reason=f"needs torchrun and the shared clips and TAEF2 weights under {shared_dir()} (set MARDINI_SHARED)",
)


STAGES = REPO / "configs" / "stages"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def train_args(out: Path, data: Path, cache: Path, *extra: str, config: Path, steps: int) -> list[str]:
    return ["-m", "mardini_core", "train", "--config", str(config), "--out", str(out), "--data", str(data), "--cache-dir", str(cache),
            "--steps", str(steps), "--threads", "1", "--json", *extra]


def launcher_env(out: Path) -> dict:
    """The launchers' environment, their temporary folders (torchelastic_*) inside the test's own, which pytest clears."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return {**ENV, "TMPDIR": str(out.parent)}


def torchrun(out: Path, data: Path, cache: Path, *extra: str, config: Path = STAGES / "tiny_stage1.toml", steps: int = 8):
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node=2", *train_args(out, data, cache, *extra, config=config, steps=steps)]
    proc = subprocess.run(cmd, env=launcher_env(out), cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def two_nodes(out: Path, data: Path, cache: Path, *extra: str, config: Path, steps: int) -> list[subprocess.Popen]:
    """The README's two-node line started twice on this machine: each launcher is a 'node' of one process."""
    with socket.socket() as free:
        free.bind(("localhost", 0))
        port = free.getsockname()[1]
    cmd = [TORCHRUN, "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=localhost:{port}",
           f"--rdzv-id={out.name}-{port}", *train_args(out, data, cache, *extra, config=config, steps=steps)]
    out.parent.mkdir(parents=True, exist_ok=True)
    nodes = []
    for i in range(2):
        log = out.parent / f"{out.name}-{port}-node{i}.log"
        with log.open("w") as err:  # a file, not a pipe: a waiting test never blocks a chatty launcher
            nodes.append(subprocess.Popen(cmd, env=launcher_env(out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True))
        nodes[-1].log = log
    return nodes


def finish(nodes: list[subprocess.Popen]) -> None:
    for node in nodes:
        node.wait(timeout=300)
        assert node.returncode == 0, node.log.read_text()[-3000:]


@pytest.fixture()
def data(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "carphone_pristine.mp4").symlink_to(CLIPS / "carphone_pristine.mp4")
    return folder


@pytest.mark.slow
def test_two_process_runs_load_in_one_process(tmp_path, data):
    cache = tmp_path / "latents"
    fsdp = torchrun(tmp_path / "fsdp", data, cache)
    assert json.loads(fsdp.stdout.strip().splitlines()[-1])["steps"] == 8  # one summary, from rank 0 only
    torchrun(tmp_path / "replicate", data, cache, "--sharding", "replicate")

    model = load_checkpoint(tmp_path / "fsdp" / "model.safetensors")
    assert model.config.generator.attention == "ST"
    sharded, replicated = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("fsdp", "replicate"))
    torch.manual_seed(0)  # the untrained model of the same seed: training must have moved the weights
    moved = max((sharded[k] - v).abs().max().item() for k, v in type(model)(model.config).state_dict().items())
    assert moved > 1e-3
    for name in sharded:  # the same maths, only the reduction order differs
        torch.testing.assert_close(sharded[name], replicated[name], rtol=1e-3, atol=1e-4)
    log = [json.loads(line) for line in (tmp_path / "fsdp" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 8]  # written once (rank 0), at log_every and the end
    assert sorted(p.name for p in (tmp_path / "fsdp" / "checkpoints").iterdir()) == ["state-00000008.safetensors"]

    # the FSDP2 run's training state (gathered to rank 0) resumes in a single process
    cfg = load_stage(REPO / "configs" / "stages" / "tiny_stage1.toml")
    cfg = dataclasses.replace(cfg, steps=8, data=dataclasses.replace(cfg.data, paths=(str(data),)))
    trainer = Trainer(cfg, RunOptions(tmp_path / "fsdp", resume=True, cache_dir=str(cache)))
    assert trainer.step == 8 and trainer.optimizer.state  # weights, step and AdamW moments restored
    resumed = trainer.modules.model.state_dict()
    for name, value in sharded.items():
        assert torch.equal(resumed[name], value), name


@pytest.mark.slow
def test_sharded_joint_stage_with_plan_dropping_ema_and_previews(tmp_path, data):
    """Stage 3 under FSDP2: per-clip Z_uncond swap, EMA of sharded weights, a preview from sharded networks."""
    config = tmp_path / "stage3.toml"
    config.write_text((REPO / "configs" / "stages" / "tiny_stage3.toml").read_text().replace("sample_every = 20", "sample_every = 4"))
    torchrun(tmp_path / "s3", data, tmp_path / "latents", config=config, steps=4)
    model = load_checkpoint(tmp_path / "s3" / "model.safetensors")
    assert model.config.generator.attention == "T"
    state = load_file(str(tmp_path / "s3" / "checkpoints" / "state-00000004.safetensors"))
    for name, value in model.state_dict().items():  # the final model holds the gathered EMA weights
        assert torch.equal(state[f"ema/{name}"], value), name
    assert (tmp_path / "s3" / "samples" / "step-00000004.png").stat().st_size > 0


def checkpointed(tmp_path: Path, n: int) -> Path:
    """tiny_stage{n}.toml with activation checkpointing on, a training state every 2 steps and no previews."""
    text = (STAGES / f"tiny_stage{n}.toml").read_text()
    path = tmp_path / f"stage{n}.toml"
    path.write_text(text.replace("[model]\n", "[model]\ngradient_checkpointing = true\n").replace("every = 10", "every = 2").replace("sample_every = 20", "sample_every = 0"))
    return path


@pytest.mark.slow
def test_two_nodes_chain_the_three_stages_and_a_killed_stage_resumes_bit_identically(tmp_path, data):
    configs, steps, cache = {n: checkpointed(tmp_path, n) for n in (1, 2, 3)}, {1: 4, 2: 12, 3: 4}, tmp_path / "latents"
    init: list[str] = []
    for n in (1, 2, 3):  # the uninterrupted chain
        finish(two_nodes(tmp_path / "whole" / f"s{n}", data, cache, *init, config=configs[n], steps=steps[n]))
        init = ["--init", str(tmp_path / "whole" / f"s{n}" / "model.safetensors")]

    killed = tmp_path / "killed" / "s2"  # stage 2 again from the same stage 1, killed mid-stage
    nodes = two_nodes(killed, data, cache, "--init", str(tmp_path / "whole" / "s1" / "model.safetensors"), config=configs[2], steps=steps[2])
    deadline = time.time() + 240
    while not list((killed / "checkpoints").glob("state-*.safetensors")) and time.time() < deadline and nodes[0].poll() is None:
        time.sleep(0.05)
    for node in nodes:
        os.killpg(node.pid, signal.SIGKILL)  # both launchers and their trainers, as a lost node takes down a job
        node.wait()
    assert not (killed / "model.safetensors").exists(), "stage 2 finished before it could be killed"
    finish(two_nodes(killed, data, cache, "--resume", config=configs[2], steps=steps[2]))
    finish(two_nodes(tmp_path / "killed" / "s3", data, cache, "--init", str(killed / "model.safetensors"), config=configs[3], steps=steps[3]))

    for n in (2, 3):
        whole, resumed = (load_file(str(tmp_path / run / f"s{n}" / "model.safetensors")) for run in ("whole", "killed"))
        assert whole.keys() == resumed.keys()
        for name in whole:
            assert torch.equal(whole[name], resumed[name]), (n, name)
    log = [json.loads(line)["step"] for line in (killed / "log.jsonl").read_text().splitlines()]
    assert log == sorted(set(log)) and log[-1] == steps[2]
    assert load_checkpoint(tmp_path / "killed" / "s3" / "model.safetensors").config.generator.attention == "T"
