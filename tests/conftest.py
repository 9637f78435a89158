"""Test-wide settings: offline hubs, a private cache directory, deterministic torch."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated data goes to a per-session folder, never the user's cache."""
    os.environ["P2PVISION_CACHE"] = str(tmp_path_factory.mktemp("p2pvision-cache"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
