"""Data-parallel supernet training (measure/distributed.py): torchrun's environment, shares of the batch, and two
gloo ranks on the CPU against one process: exactness, DDP, settings checked across ranks, checkpoints.

The two-rank cases run in one pair of processes (:func:`two_ranks`, distributed_ranks.py, a few seconds), which
record what each rank ended with; the tests read those records.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from distributed_ranks import ONE_STEP, RESUMED, VARIANTS, record, train

from mobilenet_search.errors import UserError
from mobilenet_search.measure.distributed import Launch, Ranks

TORCHRUN = dict(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")
HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """What two gloo ranks (distributed_ranks.py) and one process ended with, in every scenario."""
    folder = tmp_path_factory.mktemp("ranks")
    (folder / "garbage.pt").write_bytes(b"\x00not a checkpoint")

    def stop_in_second_epoch(epoch, step, steps, loss):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # one process trains the first epoch of RESUMED, the ranks the rest
        train(RESUMED, folder / "resume.pt", on_step=stop_in_second_epoch)
    port = str(free_port())
    ranks = [subprocess.Popen([sys.executable, str(HERE / "distributed_ranks.py"), str(folder)], stderr=subprocess.PIPE,
                              text=True, env=dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                                                  MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1"))
             for rank in range(2)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks
    try:
        one = {"one-step": record(*train(ONE_STEP, folder / "one.pt")),
               "resumed": record(*train(RESUMED, folder / "uninterrupted.pt"))}
    finally:
        torch.set_num_threads(threads)
    assert [rank.wait(timeout=300) for rank in ranks] == [0, 0], [rank.stderr.read()[-3000:] for rank in ranks]
    return one, [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(2)], folder


def _gradient_gap(a: dict, b: dict) -> float:
    """The largest gradient difference, relative to the largest gradient of its tensor, over the tensors whose
    gradient is not zero in exact arithmetic (some BatchNorm biases: the next BatchNorm removes their shift;
    their float32 gradients are rounding noise near 1e-9)."""
    return max(((a[k] - b[k]).abs().max() / b[k].abs().max()).item() for k in b if b[k].abs().max() > 1e-6)


def _weight_gap(a: dict, b: dict, grads: dict) -> float:
    """The largest weight difference after one AdamW step, over the entries whose gradient is above 1e-3 of its
    tensor's largest. AdamW's first step is the learning rate times the gradient's sign (for a gradient well
    above its eps, 1e-8, whose share of the step is then below 1e-3): an entry near zero can take either sign in
    float32, in one process as in two."""
    return max((a[k] - b[k])[grads[k].abs() > 1e-3 * grads[k].abs().max()].abs().max().item()
               for k in grads if grads[k].abs().max() > 1e-6)


# Float32's own error on these gradients, measured against the same step in float64 on the same batch (tiny
# space, batch 128): 9e-4 (smallest member) to 5e-3 (largest) for one process, 7e-5 to 1.2e-4 for two ranks.
# Two ranks and one process cannot agree more closely than the float32 error of either; each rank normalising
# its own half of the batch (no SyncBatchNorm) is 0.2-0.45 away.
GRADIENT_TOLERANCE = 1e-2


def test_two_ranks_with_synced_batchnorm_take_one_process_s_step_to_float_tolerance(two_ranks):
    one, ranks, _ = two_ranks
    reference = one["one-step"]
    for name in ("sync", "ddp"):  # gradients averaged by hand and by DDP
        for rank in ranks:
            assert rank[name]["grads"].keys() == reference["grads"].keys()
            assert _gradient_gap(rank[name]["grads"], reference["grads"]) < GRADIENT_TOLERANCE, name
            assert _weight_gap(rank[name]["state"], reference["state"], reference["grads"]) < 1e-5, name
            assert rank[name]["losses"] == pytest.approx(reference["losses"], rel=1e-5)
    # ... and the test can tell: each rank normalising its own half of the batch is another step.
    assert _gradient_gap(ranks[0]["local"]["grads"], reference["grads"]) > 10 * GRADIENT_TOLERANCE


def test_every_rank_ends_with_the_same_weights_and_with_synced_batchnorm_the_same_statistics(two_ranks):
    _, (first, second), _ = two_ranks
    parameters = set(first["sync"]["grads"])  # every parameter gets a gradient: the largest member uses all
    for name in VARIANTS:
        for key, value in first[name]["state"].items():
            if key in parameters or VARIANTS[name].sync_batchnorm:
                assert torch.equal(value, second[name]["state"][key]), (name, key)
    # Unsynced, each rank's running statistics are its own shares' (scoring recomputes them anyway).
    assert not torch.equal(first["local"]["state"]["features.0.1.running_mean"],
                           second["local"]["state"]["features.0.1.running_mean"])


def test_rank_0_alone_writes_the_checkpoint_with_its_weights(two_ranks):
    _, (first, _), folder = two_ranks
    saved = torch.load(folder / "sync.pt", weights_only=True)
    assert saved["epoch"] == 1 and saved["tag"] == "t"
    assert all(torch.equal(v, first["sync"]["state"][k]) for k, v in saved["model"].items())


def test_a_checkpoint_of_one_process_resumes_on_two_ranks(two_ranks):
    one, ranks, _ = two_ranks
    for rank in ranks:
        resumed, uninterrupted = rank["resumed"]["losses"], one["resumed"]["losses"]
        assert resumed[0] == uninterrupted[0]  # read from the checkpoint
        assert resumed[1] == pytest.approx(uninterrupted[1], rel=1e-4)  # trained on two ranks


def test_ranks_started_with_different_tags_all_refuse_in_one_line(two_ranks):
    _, ranks, _ = two_ranks
    for rank in ranks:
        assert rank["mismatch"] == ("the ranks were started with different settings: rank 1's checkpoint tag is "
                                    "tag-of-rank-1, rank 0's tag-of-rank-0; start every rank with the same command")


def test_a_corrupt_checkpoint_is_one_line_on_every_rank(two_ranks):
    _, ranks, folder = two_ranks
    for rank in ranks:
        assert rank["corrupt"].startswith(f"checkpoint {folder / 'garbage.pt'} cannot be read")
        assert "\n" not in rank["corrupt"]


# -- without other processes -----------------------------------------------------------------------------------

def test_no_torchrun_variables_is_one_process_and_all_of_them_a_launch():
    assert Launch.from_environment({}) is None
    assert Launch.from_environment(TORCHRUN) == Launch(rank=1, world_size=2, local_rank=1, local_world_size=2)
    assert Launch.from_environment(TORCHRUN | {"LOCAL_WORLD_SIZE": "4"}).local_world_size == 4


def test_restarts_with_torchrun_s_shared_store_are_refused_naming_the_variable_that_fixes_them():
    shared = TORCHRUN | {"TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_MAX_RESTARTS": "3"}
    with pytest.raises(UserError, match="^torchrun --max-restarts needs TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"):
        Launch.from_environment(shared)
    assert Launch.from_environment(shared | {"TORCHELASTIC_USE_AGENT_STORE": "False"}) is not None
    assert Launch.from_environment(shared | {"TORCHELASTIC_MAX_RESTARTS": "0"}) is not None


@pytest.mark.parametrize("missing", ["RANK", "MASTER_PORT"])
def test_torchrun_s_environment_half_set_is_refused_naming_what_is_missing(missing):
    environ = {k: v for k, v in TORCHRUN.items() if k != missing}
    with pytest.raises(UserError, match=rf"^torchrun's environment is half set: .* but {missing} not"):
        Launch.from_environment(environ)


def test_more_ranks_on_a_machine_than_gpus_is_refused_with_nccl_on_every_rank():
    assert Launch(3, 4, 3, 4).device("cpu", cuda_devices=0) == "cpu"
    assert Launch(1, 4, 1, 2).device("cuda", cuda_devices=2) == "cuda:1"
    for local_rank in (0, 3):  # the ranks that have a GPU too, so that none waits for the others in vain
        with pytest.raises(UserError, match="^4 ranks on this machine but 2 CUDA device"):
            Launch(local_rank, 4, local_rank, 4).device("cuda", cuda_devices=2)


def test_each_rank_gets_an_equal_disjoint_share_of_the_batch_in_rank_order():
    shares = [Ranks(rank, 4).shard(64) for rank in range(4)]
    assert [list(range(64))[s] for s in shares] == [list(range(16 * r, 16 * r + 16)) for r in range(4)]
    assert Ranks().shard(64) == slice(0, 64)
    for world, batch in ((3, 64), (64, 64)):
        with pytest.raises(UserError, match=f"batch of {batch} does not split into {world} equal shares"):
            Ranks(0, world).shard(batch)


def test_a_rank_whose_peers_never_join_fails_in_one_line_after_the_timeout(tmp_path):
    code = ("from mobilenet_search.measure.distributed import *\n"
            "with process_group(Launch(0, 2, 0), 'cpu', DistributedSettings(timeout=3)): pass\n")
    environ = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    result = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0
    assert "UserError: rank 0 of 2: the other ranks did not join within 3 s" in last, result.stderr


# -- under torchrun ----------------------------------------------------------------------------------------------

def torchrun(*args: str, restarts: int = 0):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--max-restarts", str(restarts), "--monitor-interval", "0.2",
               str(HERE / "torchrun_train.py"), *args]
    # Restarts need the rendezvous store kept apart from the ranks' (see Launch.from_environment).
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1", TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1"))


def test_a_rank_killed_under_torchrun_restarts_the_job_from_the_last_epoch_to_the_same_weights(tmp_path):
    uninterrupted = torchrun(str(tmp_path / "uninterrupted.pt"), "2", "0")
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    killed = torchrun(str(tmp_path / "killed.pt"), "2", "1", restarts=1)
    assert killed.returncode == 0, killed.stderr[-2000:]
    assert "resumed_epochs=1 attempt=1" in killed.stdout  # the second attempt started from epoch 1's checkpoint
    assert "-9" in killed.stderr or "SIGKILL" in killed.stderr  # torchrun saw the rank die
    a = torch.load(tmp_path / "uninterrupted.pt", weights_only=True)
    b = torch.load(tmp_path / "killed.pt", weights_only=True)
    assert a["losses"] == b["losses"] and a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
