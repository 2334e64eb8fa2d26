"""Optional experiment logging (``logger=wandb``); the default is the results store alone."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.data import PROJECT_ROOT


class WandbLogger:
    """One wandb run per job invocation: a summary row per member and its curve as a table.

    Offline by default (``WANDB_MODE=offline``); ``wandb sync`` uploads later. ``WANDB_MODE``
    in the environment wins (tests use ``disabled``).
    """

    def __init__(self, cfg: DictConfig):
        import wandb

        lcfg = cfg.logger
        os.environ.setdefault("WANDB_MODE", str(lcfg.get("mode") or "offline"))
        self.wandb = wandb
        self.run = wandb.init(
            project=str(lcfg.get("project") or "vsgd"),
            dir=str(lcfg.get("dir") or PROJECT_ROOT),
            config=OmegaConf.to_container(cfg, resolve=False),
            job_type=str(cfg.get("experiment_name") or "adhoc"),
            reinit=True,
        )
        self.rows: list[list[Any]] = []

    def log_member(self, rec: dict[str, Any]) -> None:
        name = f"{rec['benchmark']}/{rec['optimizer']}/{rec['config_hash']}"
        for point in rec.get("curve", []):
            self.run.log({f"{name}/{k}": v for k, v in point.items() if k != "step"}, commit=False)
        self.rows.append([rec["benchmark"], rec["optimizer"], rec["seed"], str(rec["hp"]), rec["train_error"],
                          rec["test_error"], rec["diverged"], rec["seconds"]])
        self.run.log({}, commit=True)

    def finish(self) -> None:
        cols = ["benchmark", "optimizer", "seed", "hp", "train_error", "test_error", "diverged", "seconds"]
        self.run.log({"members": self.wandb.Table(columns=cols, data=self.rows)})
        self.run.finish()


def make_logger(cfg: DictConfig):
    name = (cfg.get("logger") or {}).get("name", "none")
    if name == "none":
        return None
    if name == "wandb":
        return WandbLogger(cfg)
    raise ValueError(f"Unknown logger {name!r}: use logger=none or logger=wandb.")
