"""class_balance (none / pos_weight / sampler): the option's checks, the weighted loss and the
class-balanced batches it trains with, exact resume of the sampler, the imbalance space, and
the refusal of --num-samples > 1 on a space that samples nothing (pseudo-replication)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
import torch.nn.functional as F
from ray.tune.search.variant_generator import generate_variants

from tune_cilp.core.checkpoint import load_checkpoint, save_checkpoint
from tune_cilp.core.errors import UserError, run_cli
from tune_cilp.data import CilpArrays
from tune_cilp.experiment.space import check_param_space
from tune_cilp.fusion.fusion_config import TrainConfig
from tune_cilp.fusion.fusion_driver import param_space
from tune_cilp.fusion.fusion_trainer import Trainer
from tune_cilp.run import check_applies, main
from tune_cilp.run_args import build_parser, parse_request
from tune_cilp.spaces import get_space
from tune_cilp.training.balance import class_pos_weight, sample_weights
from tune_cilp.training.device import configure_process
from tune_cilp.training.trial_config import CLASS_BALANCES

FAST = {"variant": "early", "downsample": "stride"}  # the cheapest model: ~0.1 GFLOP / sample
TIMINGS = ("epoch_time_s", "samples_per_s")
KEPT_SPHERES = 5  # of the tiny set's 20 training spheres: 20 cubes : 5 spheres


@pytest.fixture(autouse=True)
def two_threads() -> None:
    configure_process(threads=2)  # what the trainable does with the CPUs it was granted


@pytest.fixture(scope="module")
def imbalanced(tiny_arrays: CilpArrays) -> CilpArrays:
    """The tiny set with most training spheres left out (validation kept whole), so that
    pos_weight is not 1 and the sampler has something to balance."""
    spheres = np.flatnonzero(tiny_arrays.is_train & (tiny_arrays.labels == 1))
    keep = np.ones(len(tiny_arrays), bool)
    keep[spheres[KEPT_SPHERES:]] = False
    return tiny_arrays.subset(keep)


def _without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in TIMINGS} for m in history]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _train(data: CilpArrays, epochs: int, **options: object) -> Trainer:
    trainer = Trainer(TrainConfig(**FAST, epochs=epochs, **options), data)
    while not trainer.done:
        trainer.run_epoch()
    return trainer


# --- The option --------------------------------------------------------------------------------


def test_class_balance_defaults_to_none_and_round_trips() -> None:
    assert TrainConfig().class_balance == "none" and CLASS_BALANCES == (
        "none",
        "pos_weight",
        "sampler",
    )
    for balance in CLASS_BALANCES:
        cfg = TrainConfig(class_balance=balance)
        assert cfg.to_dict()["class_balance"] == balance
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    # A config saved before the option existed reads as the seed's protocol.
    older = {k: v for k, v in TrainConfig().to_dict().items() if k != "class_balance"}
    assert TrainConfig.from_dict(older).class_balance == "none"


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"class_balance": "oversample"}, "class_balance: expected one of none, pos_weight"),
        ({"class_balance": None}, "class_balance: expected one of"),
        ({"class_balance": "pos_weight", "pos_weight": 2.0}, "pos_weight: expected null with"),
        ({"class_balance": "sampler", "pos_weight": 2.0}, "pos_weight: expected null with"),
    ],
)
def test_bad_class_balance_is_refused(mapping: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        TrainConfig.from_dict(mapping)
    TrainConfig(pos_weight=2.0)  # a weight by hand alone stays allowed


# --- pos_weight --------------------------------------------------------------------------------


def test_pos_weight_is_the_training_splits_cubes_to_spheres_ratio(imbalanced: CilpArrays) -> None:
    labels = imbalanced.train.labels
    cubes, spheres = int(np.sum(labels == 0)), int(np.sum(labels == 1))
    assert (cubes, spheres) == (20, KEPT_SPHERES)
    assert class_pos_weight(TrainConfig(class_balance="pos_weight"), labels) == cubes / spheres
    # The other settings keep the weight given by hand (none by default).
    assert class_pos_weight(TrainConfig(), labels) is None
    assert class_pos_weight(TrainConfig(class_balance="sampler"), labels) is None
    assert class_pos_weight(TrainConfig(pos_weight=2.5), labels) == 2.5


@pytest.mark.parametrize("label", [0, 1])
def test_pos_weight_needs_both_classes_in_training(label: int, tiny_arrays: CilpArrays) -> None:
    cfg = TrainConfig(**FAST, class_balance="pos_weight")
    with pytest.raises(UserError, match="class_balance 'pos_weight': the training split needs"):
        class_pos_weight(cfg, np.full(6, label, np.int64))
    one_class = tiny_arrays.subset(~tiny_arrays.is_train | (tiny_arrays.labels == label))
    with pytest.raises(UserError, match="needs both classes"):
        Trainer(cfg, one_class)


def test_weighted_bce_formula_is_torchs() -> None:
    # What "pos_weight" means, spelled out: the spheres' terms weighted, the mean over scenes.
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(50, generator=generator, dtype=torch.float64) * 4
    labels = (torch.rand(50, generator=generator) < 0.3).double()
    w = 4.0
    p = torch.sigmoid(logits)
    by_hand = -torch.mean(w * labels * torch.log(p) + (1 - labels) * torch.log(1 - p))
    torch_loss = F.binary_cross_entropy_with_logits(
        logits, labels, pos_weight=torch.tensor(w, dtype=torch.float64)
    )
    assert math.isclose(by_hand.item(), torch_loss.item(), rel_tol=1e-12)


def test_pos_weight_training_loss_is_the_weighted_bce(imbalanced: CilpArrays) -> None:
    cfg = TrainConfig(**FAST, epochs=1, class_balance="pos_weight", precision="fp32")
    train = imbalanced.train
    # One batch holds the whole training split, so epoch 1's training loss is the weighted BCE
    # of the initial model over all of it (a mean: the batch's order changes only rounding).
    assert len(train) <= cfg.batch_size
    trainer = Trainer(cfg, imbalanced)
    with torch.no_grad():
        rgb = torch.from_numpy(train.rgb).float() / 255
        logits = trainer.model(rgb, torch.from_numpy(train.xyza))[:, 0].double()
    y = torch.from_numpy(train.labels).double()
    w = float(np.sum(train.labels == 0) / np.sum(train.labels == 1))
    # log(sigmoid(z)) and log(1 - sigmoid(z)) as logsigmoid(z) and logsigmoid(-z): no log(0).
    weighted = -torch.mean(w * y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)).item()
    plain = -torch.mean(y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)).item()

    train_loss = trainer.run_epoch()["train_loss"]
    assert math.isclose(train_loss, weighted, rel_tol=1e-5)
    assert not math.isclose(train_loss, plain, rel_tol=1e-2)  # the weight is really applied


def test_pos_weight_trains_as_that_weight_given_by_hand(imbalanced: CilpArrays) -> None:
    # 20 / 5 from the training split; the whole set's ratio (24 / 9) or the validation
    # split's (1) would train otherwise.
    computed = _train(imbalanced, 1, class_balance="pos_weight")
    by_hand = _train(imbalanced, 1, pos_weight=20 / KEPT_SPHERES)
    assert _without_timings(computed.history) == _without_timings(by_hand.history)
    assert _same_weights(computed.model, by_hand.model)


# --- sampler -----------------------------------------------------------------------------------


def test_sample_weights_give_each_class_equal_weight() -> None:
    labels = np.array([0] * 90 + [1] * 10, np.int64)
    np.random.default_rng(0).shuffle(labels)
    weights = sample_weights(labels)
    assert weights.shape == (100,) and weights.dtype == torch.float64
    totals = [weights[torch.from_numpy(labels == k)].sum().item() for k in (0, 1)]
    assert totals == pytest.approx([1.0, 1.0], abs=1e-12)
    assert torch.all(weights[torch.from_numpy(labels == 1)] == 0.1)  # 1 / its class's count


def test_sampled_batches_are_balanced_on_imbalanced_labels(imbalanced: CilpArrays) -> None:
    # The loop's own batches (its seeded generator), drawn for a 90:10 label set.
    trainer = Trainer(TrainConfig(**FAST, epochs=1, class_balance="sampler"), imbalanced)
    labels = np.array([0] * 900 + [1] * 100, np.int64)
    weights = sample_weights(labels)
    drawn = []
    for _ in range(20):  # 20 epochs of 1,000 draws: the share's standard error is ~0.0035
        batches = list(trainer.batches(len(labels), weights))
        assert sum(len(b) for b in batches) == len(labels)
        assert all(len(b) <= trainer.cfg.batch_size for b in batches)
        drawn.append(torch.cat(batches).numpy())
    share = float(np.mean(labels[np.concatenate(drawn)]))
    assert abs(share - 0.5) < 0.02, share
    # Without weights an epoch is a permutation: the labels' own 10 %.
    plain = torch.cat(list(trainer.batches(len(labels)))).numpy()
    assert sorted(plain.tolist()) == list(range(len(labels)))


def test_sampler_is_deterministic_and_resumes_bit_for_bit(
    imbalanced: CilpArrays, tmp_path: Path
) -> None:
    straight = _train(imbalanced, 2, class_balance="sampler")
    again = _train(imbalanced, 2, class_balance="sampler")
    assert _without_timings(straight.history) == _without_timings(again.history)
    assert _same_weights(straight.model, again.model)
    plain = _train(imbalanced, 1)  # the sampler draws other batches than the permutation
    assert _without_timings(plain.history) != _without_timings(straight.history[:1])

    cfg = TrainConfig(**FAST, epochs=2, class_balance="sampler")
    interrupted = Trainer(cfg, imbalanced)
    interrupted.run_epoch()
    save_checkpoint(tmp_path / "state.pt", interrupted.state_dict())
    torch.manual_seed(1234)  # disturb the global RNG as a new process would
    resumed = Trainer(cfg, imbalanced)
    resumed.load_state_dict(load_checkpoint(tmp_path / "state.pt"))
    resumed.run_epoch()

    assert _without_timings(resumed.history) == _without_timings(straight.history)
    assert _same_weights(resumed.model, straight.model)
    assert _same_weights(resumed.best_model(), straight.best_model())
    a, b = resumed.predictions(), straight.predictions()
    assert a is not None and b is not None and a.best is not None and b.best is not None
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.labels, b.labels)
    assert (a.best.epoch, a.last.epoch) == (b.best.epoch, b.last.epoch)
    assert np.array_equal(a.best.proba, b.best.proba)
    assert np.array_equal(a.last.proba, b.last.proba)


# --- The imbalance space and --num-samples -----------------------------------------------------


def test_imbalance_space_is_both_seed_models_times_every_balance() -> None:
    space = get_space("imbalance")
    params = param_space(space, 2, None)
    check_param_space(space.name, params, TrainConfig.from_dict)
    configs = [config for _, config in generate_variants(params)]
    assert sorted((c["variant"], c["downsample"], c["class_balance"]) for c in configs) == [
        ("concat", downsample, balance)
        for downsample in ("maxpool", "stride")
        for balance in ("none", "pos_weight", "sampler")
    ]
    for config in configs:
        cfg = TrainConfig.from_dict(config)
        assert cfg.class_balance == config["class_balance"] and cfg.pos_weight is None
        assert (cfg.lr, cfg.batch_size, cfg.seed, cfg.epochs) == (1e-3, 32, 51, 2)
    assert not space.samples  # a grid: replicates come from --seeds


@pytest.mark.parametrize("space", ["seed-ablation", "imbalance"])
def test_num_samples_on_a_space_that_samples_nothing_is_refused(
    space: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--storage-path", str(tmp_path), "--space", space, "--num-samples", "2"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --num-samples 2: "), err
    assert f"space {space!r} samples nothing" in err and "--seeds" in err
    assert not ray.is_initialized()  # refused before Ray (or the data) was touched
    assert not list(tmp_path.iterdir())


def test_num_samples_is_accepted_where_the_space_samples(tmp_path: Path) -> None:
    argv = ["--storage-path", str(tmp_path), "--space", "hpo", "--num-samples", "2"]
    request = parse_request(build_parser().parse_args(argv), argv, time.time())
    assert request.num_samples == 2
    check_applies(request, get_space("hpo"))  # no UserError
    argv = ["--storage-path", str(tmp_path), "--num-samples", "1"]  # 1 is no copy: allowed
    check_applies(
        parse_request(build_parser().parse_args(argv), argv, time.time()),
        get_space("seed-ablation"),
    )
