"""Shared fixtures."""

import pytest
from hub_server import HubServer, use_hub_server


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    """A Hub-compatible server on 127.0.0.1 with huggingface_hub and the user registry pointed at it."""
    with HubServer() as server:
        use_hub_server(monkeypatch, server, tmp_path)
        yield server
