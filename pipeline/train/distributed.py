"""Data-parallel training on a Ray cluster: Ray Train's TorchTrainer (DDP) around the same loop.

    segment-archive train jobs/train-isbi2012.yaml --workers 4 --gpu [--address auto]

Each worker runs `pipeline.train.loop.train` with its own rank (its own tile
sampling); gradients are averaged by DDP; rank 0 validates and writes the
checkpoints, so the output folder looks exactly like a single-process run's.
"""

from __future__ import annotations

from typing import Any

from pipeline.train.loop import Replica, train
from pipeline.train.spec import TrainSpec


def _worker_loop(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    spec = TrainSpec.model_validate(config["spec"])
    replica = Replica(context.get_world_rank(), context.get_world_size(), ray.train.torch.prepare_model)
    rows = train(spec, resume=config["resume"], replica=replica)
    ray.train.report({"step": rows[-1].step if rows else 0, "rand_error": rows[-1].rand_error if rows else None})


def train_distributed(
    spec: TrainSpec, workers: int, use_gpu: bool = False, resume: bool = False, address: str | None = None
) -> None:
    import os

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"spec": spec.model_dump(mode="json"), "resume": resume},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        run_config=RunConfig(storage_path=os.path.join(spec.output, "ray-train"), name=spec.name),
    )
    trainer.fit()
