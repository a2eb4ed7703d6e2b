"""Training a prior on a token store with Lightning (``vqtok prior fit``); the models live in :mod:`vqtok.prior`."""

from vqtok.prior_training.data import PriorDataModule
from vqtok.prior_training.module import PriorTraining

__all__ = ["PriorDataModule", "PriorTraining"]
