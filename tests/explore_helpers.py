"""A tiny P2P model with a known answer for the explorer's tests, and a server around it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from p2pvision.explore.server import make_server
from p2pvision.explore.session import Explorer
from p2pvision.models.p2p import P2PConfig, P2PModel
from p2pvision.webserver import server_url

TINY = dict(num_classes=4, image_size=32, classifier="test_resnet", selector_backbone="test_resnet",
            selector_levels=(1, 2), head_channels=8, max_regions=16, partition={"name": "grid", "grid": 4})  # fmt: skip
THRESHOLD = 0.525  # the constructed model keeps every region when tau > THRESHOLD and none below


def threshold_model() -> P2PModel:
    """A tiny P2P model whose selection logit is ``10 * (tau - THRESHOLD)`` at every pixel: below the threshold it
    keeps no region, above it every region (the known answer the mask must follow)."""
    torch.manual_seed(0)
    model = P2PModel(P2PConfig(**TINY)).eval()
    with torch.no_grad():
        model.selector.out.weight[0].zero_()
        model.selector.out.weight[0, -1] = 10.0  # the last input channel of the output layer is tau
        model.selector.out.bias[0] = -10.0 * THRESHOLD
    return model


def write_images(folder: Path, names: list[str], size: tuple[int, int] = (40, 48)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, name in enumerate(names):
        pixels = (np.random.default_rng(number).random((*size, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name)
        paths.append(folder / name)
    return paths


@contextmanager
def serving(explorer: Explorer) -> Iterator[str]:
    """The explorer's server on a free loopback port, in a thread; yields its URL."""
    server = make_server(explorer, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server_url(server)
    finally:
        server.shutdown()
        server.server_close()
