"""Shared test settings: one torch thread, so tiny-model tests are not slowed by thread oversubscription
on a 2-core machine (measured ~15x slower with background load)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
