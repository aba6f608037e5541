"""CILP on NVIDIA's assessment protocol (docs/CILP.md)."""

from tune_cilp.cilp.cilp_space import CilpSpace

SPACE = CilpSpace(
    name="cilp-nvidia",
    description=(
        "CILP on NVIDIA's assessment protocol: depth LiDAR input, contrastive 3 epochs at lr "
        "1e-4, projector 40 epochs, classifier = the frozen LiDAR head (10 epochs on LiDAR "
        "embeddings, or NVIDIA's LiDAR CNN with --lidar-cnn) fine-tuned 5 epochs."
    ),
    stages={
        "contrastive": {"epochs": 3, "lr": 1e-4, "lidar_input": "depth"},
        "projector": {"epochs": 40},
        "classifier": {"mode": "nvidia", "finetune": True, "epochs": 5, "head_epochs": 10},
    },
)
