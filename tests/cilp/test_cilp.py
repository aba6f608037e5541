"""CILP parts without Ray: sizes, the contrastive loss, the seed similarity's floor, frozen
parts, exact resume, and bad input (one-line UserError)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tune_cilp.cilp.cilp_model import LidarCNN, embedder, lidar_input, projector
from tune_cilp.cilp.losses import (
    LogitScale,
    contrastive_loss,
    retrieval_top1,
    seed_loss_floor,
    similarity_logits,
)
from tune_cilp.cilp.stage_trainers import StageTrainer, load_lidar_cnn, make_trainer
from tune_cilp.cilp.stages import (
    STAGES,
    cilp_rows,
    classifier_stage,
    get_stage,
    stage_config,
    stage_names,
)
from tune_cilp.core.checkpoint import save_checkpoint
from tune_cilp.core.errors import UserError
from tune_cilp.core.metrics import TRIAL_INFO
from tune_cilp.data import CilpArrays


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("downsample", ["maxpool", "stride"])
def test_parameter_counts(downsample: str) -> None:
    emb = embedder(4, 200, downsample)
    assert n_params(emb) == 927_650
    assert emb(torch.rand(2, 4, 64, 64)).shape == (2, 200)
    assert n_params(projector(200, 200)) == 801_700
    assert n_params(LidarCNN()) == 906_201
    assert LidarCNN().embedder(torch.rand(2, 1, 64, 64)).shape == (2, 3200)


def test_contrastive_loss_is_the_mean_of_both_cross_entropies_3x3() -> None:
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.5, 1.0, 0.0], [1.0, -1.0, 3.0]])
    e = math.exp
    rows = [
        -math.log(e(2) / (e(2) + e(0) + e(1))),
        -math.log(e(1) / (e(0.5) + e(1) + e(0))),
        -math.log(e(3) / (e(1) + e(-1) + e(3))),
    ]
    cols = [
        -math.log(e(2) / (e(2) + e(0.5) + e(1))),
        -math.log(e(1) / (e(0) + e(1) + e(-1))),
        -math.log(e(3) / (e(1) + e(0) + e(3))),
    ]
    expected = (sum(rows) / 3 + sum(cols) / 3) / 2
    assert contrastive_loss(logits).item() == pytest.approx(expected, rel=1e-6)


def simplex(batch: int) -> torch.Tensor:
    """batch unit vectors with pairwise cosine -1/(batch-1)."""
    v = torch.eye(batch, dtype=torch.float64) - 1 / batch
    return torch.nn.functional.normalize(v, dim=1)


def test_seed_floor_is_its_analytic_value_and_clip_goes_below() -> None:
    b = 32
    assert seed_loss_floor(b) == pytest.approx(2.9705, abs=1e-4)
    u = simplex(b)
    at_simplex = contrastive_loss(similarity_logits(u, u, "seed")).item()
    assert at_simplex == pytest.approx(seed_loss_floor(b), rel=1e-6)  # float32 logits

    # A separable toy set: b free embeddings per modality, trained to pair up.
    def train(similarity: str) -> float:
        torch.manual_seed(0)
        a, c = torch.randn(b, 40, requires_grad=True), torch.randn(b, 40, requires_grad=True)
        scale = LogitScale()
        opt = torch.optim.Adam([a, c, *scale.parameters()], lr=0.05)
        for _ in range(400):
            x, y = (torch.nn.functional.normalize(t, dim=1) for t in (a, c))
            loss = contrastive_loss(similarity_logits(x, y, similarity, scale()))
            opt.zero_grad()
            loss.backward()
            opt.step()
            scale.clamp_()
        return loss.item()

    seed, clip = train("seed"), train("clip")
    assert seed_loss_floor(b) - 1e-5 <= seed < seed_loss_floor(b) + 0.01
    assert clip < seed_loss_floor(b) - 2.5


def test_retrieval_counts_own_partner_nearest() -> None:
    u = simplex(4).float()
    assert retrieval_top1(u, u) == (1.0, 1.0)
    assert retrieval_top1(u, u[[1, 0, 2, 3]]) == (0.5, 0.5)


def test_depth_is_the_norm_of_xyz_and_misses_hold_50(tiny_arrays: CilpArrays) -> None:
    xyza = torch.from_numpy(tiny_arrays.xyza[:4])
    depth = lidar_input(xyza, "depth")
    assert depth.shape == (4, 1, 64, 64)
    miss = xyza[:, 3:4] == 0
    assert miss.any() and torch.allclose(depth[miss], torch.tensor(50.0), atol=1e-4)
    assert torch.equal(lidar_input(xyza, "xyza"), xyza)


@pytest.fixture(scope="module")
def contrastive_ckpt(tiny_arrays: CilpArrays, tmp_path_factory: pytest.TempPathFactory) -> Path:
    trainer = make_trainer({"stage": "contrastive", "epochs": 1, "batch_size": 8}, tiny_arrays)
    trainer.run_epoch()
    return save_checkpoint(tmp_path_factory.mktemp("c") / "state.pt", trainer.state_dict())


@pytest.fixture(scope="module")
def projector_ckpt(
    tiny_arrays: CilpArrays, contrastive_ckpt: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    cfg = {"stage": "projector", "epochs": 2, "contrastive_checkpoint": str(contrastive_ckpt)}
    trainer = make_trainer(cfg, tiny_arrays)
    while not trainer.done:
        trainer.run_epoch()
    return save_checkpoint(tmp_path_factory.mktemp("p") / "state.pt", trainer.state_dict())


def assert_frozen(trainer, reference: dict, names: tuple[str, ...]) -> None:
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    for name in names:
        part = trainer.parts[name]
        assert all(not p.requires_grad and id(p) not in optimised for p in part.parameters())
        for key, value in part.state_dict().items():
            assert torch.equal(value, reference[f"{name}.{key}"]), f"{name}.{key} changed"


def test_projector_leaves_the_embedders_bit_identical(
    tiny_arrays: CilpArrays, contrastive_ckpt: Path, projector_ckpt: Path
) -> None:
    best = torch.load(contrastive_ckpt, weights_only=True)["best_model"]
    state = torch.load(projector_ckpt, weights_only=True)
    for key, value in best.items():
        if not key.startswith("scale"):
            assert torch.equal(state["model"][key], value), key
    trainer = make_trainer(state["config"], tiny_arrays)
    trainer.run_epoch()
    assert_frozen(trainer, best, ("rgb", "lidar"))
    assert trainer.history[0]["val_loss"] < 1 and -1 <= trainer.history[0]["val_cosine"] <= 1


def test_a_changed_frozen_part_is_caught(tiny_arrays: CilpArrays, contrastive_ckpt: Path) -> None:
    cfg = {"stage": "projector", "epochs": 1, "contrastive_checkpoint": str(contrastive_ckpt)}
    trainer = make_trainer(cfg, tiny_arrays)
    with torch.no_grad():
        trainer.parts["lidar"][0].weight[0, 0, 0, 0] += 1  # as a buggy stage would
    with pytest.raises(RuntimeError, match="frozen weights changed: \\['lidar.0.weight'\\]"):
        trainer.run_epoch()


@pytest.mark.parametrize(
    ("mode", "finetune", "head_epochs", "frozen"),
    [
        ("seed", False, 0, ("rgb", "lidar", "projector")),
        ("seed", True, 0, ("lidar",)),  # the seed notebook's protocol (the cilp space)
        ("nvidia", False, 0, ("rgb", "lidar", "projector")),
        ("nvidia", True, 2, ("lidar",)),
    ],
)
def test_classifier_trains_only_what_it_should(
    tiny_arrays: CilpArrays,
    projector_ckpt: Path,
    mode: str,
    finetune: bool,
    head_epochs: int,
    frozen: tuple[str, ...],
) -> None:
    upstream = torch.load(projector_ckpt, weights_only=True)["best_model"]
    cfg = {"stage": "classifier", "epochs": 1, "projector_checkpoint": str(projector_ckpt)}
    cfg.update(mode=mode, finetune=finetune, head_epochs=head_epochs)
    trainer = make_trainer(cfg, tiny_arrays)
    assert trainer.num_parameters == 927_650 + 801_700 + 20_201
    head_after_lidar = None
    while not trainer.done:
        trainer.run_epoch()
        if trainer.phases[trainer.epoch - 1] == "lidar":
            head_after_lidar = {k: v.clone() for k, v in trainer.parts["head"].state_dict().items()}
    assert_frozen(trainer, upstream, frozen)  # bit-identical, out of the optimiser
    for name in ("rgb", "projector"):  # fine-tuning changes every tensor of the RGB path
        state = trainer.parts[name].state_dict()
        changed = [k for k, v in state.items() if not torch.equal(v, upstream[f"{name}.{k}"])]
        assert changed == (list(state) if finetune else []), name
    if mode == "nvidia" and finetune:  # the LiDAR head is used frozen while the RGB path tunes
        assert_frozen(trainer, {f"head.{k}": v for k, v in head_after_lidar.items()}, ("head",))
        # and the weights kept come from the fine-tune phase, not the head-only epochs
        assert trainer.best_epoch > head_epochs
        assert all(row["best_epoch"] > head_epochs for row in trainer.history[head_epochs:])


@pytest.mark.parametrize("mode", ["seed", "nvidia"])
def test_the_rgb_classifier_rebuilt_from_its_checkpoint_predicts_as_the_trainer(
    tiny_arrays: CilpArrays, projector_ckpt: Path, tmp_path: Path, mode: str
) -> None:
    from tune_cilp.cilp.stage_trainers import load_stage_checkpoint, rgb_classifier
    from tune_cilp.fusion.fusion_trainer import predict_proba

    cfg = {"stage": "classifier", "epochs": 1, "projector_checkpoint": str(projector_ckpt)}
    cfg.update(mode=mode, finetune=True, head_epochs=int(mode == "nvidia"), precision="fp32")
    trainer = make_trainer(cfg, tiny_arrays)
    while not trainer.done:
        trainer.run_epoch()
    path = save_checkpoint(tmp_path / "state.pt", trainer.state_dict())
    model = rgb_classifier(load_stage_checkpoint(str(path), "classifier"))
    val = ~tiny_arrays.is_train
    proba = predict_proba(model, tiny_arrays.rgb[val], tiny_arrays.xyza[val])
    stored = trainer.predictions().best  # the kept epoch's validation scores
    assert list(tiny_arrays.ids[val]) == list(trainer.predictions().ids)
    np.testing.assert_allclose(proba, stored.proba, atol=1e-5)


def test_resume_is_bit_exact(tiny_arrays: CilpArrays, tmp_path: Path) -> None:
    cfg = {"stage": "contrastive", "epochs": 2, "batch_size": 8, "precision": "fp32"}
    straight = make_trainer(cfg, tiny_arrays)
    first = [straight.run_epoch() for _ in range(2)]
    part = make_trainer(cfg, tiny_arrays)
    part.run_epoch()
    path = save_checkpoint(tmp_path / "state.pt", part.state_dict())
    resumed = make_trainer(cfg, tiny_arrays)
    resumed.load_state_dict(torch.load(path, weights_only=True))
    second = resumed.run_epoch()
    timing = ("epoch_time_s", "samples_per_s")
    assert {k: v for k, v in second.items() if k not in timing} == {
        k: v for k, v in first[1].items() if k not in timing
    }


def test_the_stage_registry_holds_together() -> None:
    """Each Stage: a name of its own, its upstream earlier in the chain, a StageTrainer, rows
    and curves from what it reports; the table's row keys unique; one classifier stage."""
    names = stage_names()
    assert len(set(names)) == len(names) and get_stage(names[0]).upstream is None
    for index, stage in enumerate(STAGES):
        assert issubclass(stage.trainer_class(), StageTrainer)
        assert index == 0 or stage.upstream.name in names[:index]
        reported = {m.key for m in stage.epoch_metrics}
        assert set(stage.curves) <= reported
        assert {r.source for r in stage.rows} <= reported | set(TRIAL_INFO)
        upstream = {stage.upstream_key: "x.pt"} if stage.upstream_key else {}
        assert type(stage_config({"stage": stage.name, **upstream})) is stage.config
    keys = [m.key for m in cilp_rows()]
    assert len(set(keys)) == len(keys)
    assert classifier_stage() is STAGES[-1]
    with pytest.raises(UserError, match="stage: expected contrastive, got 'projector'"):
        get_stage("contrastive").config.from_dict({"stage": "projector"})


def test_channels_last_is_honoured_and_checked(tiny_arrays: CilpArrays) -> None:
    cfg = {"stage": "contrastive", "epochs": 1, "batch_size": 8, "precision": "fp32"}
    assert make_trainer(cfg, tiny_arrays).memory_format == torch.channels_last  # None: on CPU
    off = make_trainer({**cfg, "channels_last": False}, tiny_arrays)
    assert off.memory_format == torch.contiguous_format
    off.run_epoch()
    with pytest.raises(UserError, match="channels_last"):
        stage_config({**cfg, "channels_last": "yes"})


def test_a_checkpoint_from_before_channels_last_resumes(
    tiny_arrays: CilpArrays, tmp_path: Path
) -> None:
    old = {"stage": "contrastive", "epochs": 2, "batch_size": 8, "precision": "fp32"}
    straight = make_trainer(old, tiny_arrays)
    expected = [straight.run_epoch() for _ in range(2)][1]
    part = make_trainer(old, tiny_arrays)
    part.run_epoch()
    state = part.state_dict()
    del state["config"]["channels_last"]  # as an older version saved it
    resumed = make_trainer(old, tiny_arrays)
    resumed.load_state_dict(state)
    second = resumed.run_epoch()
    assert second["val_loss"] == expected["val_loss"]
    with pytest.raises(UserError, match="differs"):
        make_trainer({**old, "channels_last": False}, tiny_arrays).load_state_dict(state)


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_bad_input_is_one_line(
    tiny_arrays: CilpArrays, contrastive_ckpt: Path, projector_ckpt: Path, tmp_path: Path
) -> None:
    def error(fn) -> str:
        with pytest.raises(UserError) as info:
            fn()
        assert "\n" not in str(info.value)
        return str(info.value)

    proj = {"stage": "projector", "epochs": 1}
    missing = str(tmp_path / "nope.pt")
    assert "checkpoint file not found" in error(
        lambda: make_trainer({**proj, "contrastive_checkpoint": missing}, tiny_arrays)
    )
    assert "a projector checkpoint, not a contrastive one" in error(
        lambda: make_trainer({**proj, "contrastive_checkpoint": str(projector_ckpt)}, tiny_arrays)
    )
    assert "expected one of clip, seed" in error(
        lambda: stage_config({"stage": "contrastive", "similarity": "cosine"})
    )
    assert "expected one of seed, nvidia" in error(
        lambda: stage_config({"stage": "classifier", "projector_checkpoint": "x", "mode": "x"})
    )
    wrong = {k: v for k, v in LidarCNN().state_dict().items()}
    wrong["classifier.0.weight"] = torch.zeros(100, 12800)
    torch.save(wrong, tmp_path / "wrong.pt")
    assert "classifier.0.weight has shape (100, 12800), expected (100, 3200)" in error(
        lambda: load_lidar_cnn(str(tmp_path / "wrong.pt"))
    )
    (tmp_path / "payload.pt").write_bytes(pickle.dumps(Payload()))
    assert "not a loadable checkpoint" in error(
        lambda: load_lidar_cnn(str(tmp_path / "payload.pt"))
    )
    torch.save(LidarCNN().state_dict(), tmp_path / "good.pt")
    assert set(load_lidar_cnn(str(tmp_path / "good.pt"))) == set(LidarCNN().state_dict())


def test_every_cilp_space_checks_out() -> None:
    from tune_cilp.cilp.chain import baseline_params, stage_params
    from tune_cilp.cilp.cilp_space import CilpSpace
    from tune_cilp.experiment.space import check_param_space
    from tune_cilp.fusion.fusion_config import TrainConfig
    from tune_cilp.spaces import get_space, list_spaces

    spaces = [s for s in list_spaces() if isinstance(s, CilpSpace)]
    assert {"cilp", "cilp-nvidia", "cilp-similarity"} <= {s.name for s in spaces}
    for space in spaces:
        for lidar_cnn in (None, "nvidia_lidar_cnn.pt"):

            def validate(params: dict, nvidia_cnn: bool = lidar_cnn is not None) -> None:
                config = stage_config(params)
                assert not hasattr(config, "phases") or config.phases(nvidia_cnn)

            for stage in stage_names():
                params = stage_params(space, stage, [51, 52], None, None, lidar_cnn)
                check_param_space(space.name, params, validate)
        if space.baselines:
            check_param_space(
                space.name, baseline_params(space, [51], None, None), TrainConfig.from_dict
            )
    nvidia_space = get_space("cilp-nvidia")
    nvidia = stage_config({**stage_params(nvidia_space, "classifier", None, None, None, None)})
    assert nvidia.phases(False) == ["lidar"] * 10 + ["rgb"] * 5
