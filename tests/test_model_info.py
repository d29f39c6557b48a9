"""RobustBench's model_info without a clone: each model's file fetched over HTTP from RobustBench's repository
(served here on 127.0.0.1 from the copy of its tree in tests/data), checked, cached under HF_HOME; a failure
(404, unreachable, not model_info) is one line saying how to give a clone's folder instead. No robustbench needed."""

from __future__ import annotations

import json
import socket

import pytest
from model_info_server import TREE, ModelInfoServer

from zoo.errors import ConfigError
from zoo import model_info
from zoo.model_info import DEFAULT_URL, URL_ENV, cache_root, find_model_info_dir, read_model_info

WRN = ("Hendrycks2020AugMix_WRN", "cifar10", "corruptions")
CLONE_HINT = "pass --model-info-dir with the model_info folder of a clone of RobustBench's repository"


@pytest.fixture()
def server(monkeypatch):
    with ModelInfoServer() as served:
        monkeypatch.setenv(URL_ENV, served.url)
        yield served


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message and CLONE_HINT in message, message
    return message


def test_the_default_is_robustbenchs_github_repository(monkeypatch):
    monkeypatch.setattr(model_info, "_next_to_robustbench", lambda: [])       # no clone, robustbench or not
    tree = find_model_info_dir()
    assert DEFAULT_URL == "https://raw.githubusercontent.com/RobustBench/robustbench/master/model_info"
    assert tree.url == DEFAULT_URL and tree.where == DEFAULT_URL and tree.path.parent == cache_root()
    assert "no clone found" in tree.how and str(tree.path) in tree.how


def test_without_a_clone_a_models_file_is_fetched_once_then_read_from_the_cache(server, monkeypatch):
    monkeypatch.setattr(model_info, "_next_to_robustbench", lambda: [])
    tree = find_model_info_dir()
    assert tree.url == server.url and not tree.path.exists()
    expected = json.loads((TREE / "model_info" / "cifar10" / "corruptions" / f"{WRN[0]}.json").read_text())
    assert read_model_info(tree, *WRN) == expected
    assert server.requests == [f"/model_info/cifar10/corruptions/{WRN[0]}.json"]
    assert json.loads((tree.path / "cifar10" / "corruptions" / f"{WRN[0]}.json").read_text()) == expected
    assert read_model_info(find_model_info_dir(), *WRN) == expected          # a new run: the cache, no request
    assert len(server.requests) == 1
    monkeypatch.setenv(URL_ENV, server.url + "/")                            # the same URL, spelled with a slash
    assert find_model_info_dir().path == tree.path


def test_another_url_has_its_own_cache(server, monkeypatch):
    monkeypatch.setattr(model_info, "_next_to_robustbench", lambda: [])
    first = find_model_info_dir()
    read_model_info(first, *WRN)
    monkeypatch.setenv(URL_ENV, server.url.replace("127.0.0.1", "localhost"))
    second = find_model_info_dir()
    assert second.path != first.path and second.path.parent == first.path.parent
    read_model_info(second, *WRN)
    assert len(server.requests) == 2


def test_a_missing_file_is_404_in_one_line_and_nothing_is_cached(server):
    tree = model_info.remote_tree()
    with pytest.raises(ConfigError) as e:
        read_model_info(tree, "NoSuchModel2099", "cifar10", "Linf")
    assert one_line(e).startswith(f"cannot fetch RobustBench's model_info {server.url}/cifar10/Linf/NoSuchModel2099"
                                  ".json (no such file there); ")
    assert not tree.path.exists()


def test_an_unreachable_repository_is_one_line(monkeypatch):
    with socket.socket() as s:                      # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/model_info"
    monkeypatch.setenv(URL_ENV, url)
    tree = model_info.remote_tree()
    with pytest.raises(ConfigError) as e:
        read_model_info(tree, *WRN)
    assert one_line(e).startswith(f"cannot fetch RobustBench's model_info {url}/cifar10/corruptions/{WRN[0]}.json (")
    assert not tree.path.exists()


def test_an_answer_that_is_not_model_info_is_refused_and_not_cached(tmp_path, monkeypatch):
    board = tmp_path / "model_info" / "cifar10" / "Linf"
    board.mkdir(parents=True)
    (board / "Portal.json").write_text("<!DOCTYPE html><html><body>Sign in to the network</body></html>")
    (board / "NoAccuracy.json").write_text(json.dumps({"name": "a paper"}))
    with ModelInfoServer(tmp_path) as served:
        monkeypatch.setenv(URL_ENV, served.url)
        tree = model_info.remote_tree()
        for name in ("Portal", "NoAccuracy"):
            with pytest.raises(ConfigError) as e:
                read_model_info(tree, name, "cifar10", "Linf")
            assert one_line(e).startswith(f"{served.url}/cifar10/Linf/{name}.json is not a RobustBench model_info file")
    assert not tree.path.exists()


def test_a_given_folder_and_a_clone_next_to_robustbench_come_first(server, tmp_path, monkeypatch):
    assert find_model_info_dir(TREE).path == TREE / "model_info"
    assert find_model_info_dir(TREE / "model_info").how == "given with --model-info-dir"
    monkeypatch.setattr(model_info, "_next_to_robustbench", lambda: [tmp_path / "nothing", TREE / "model_info"])
    tree = find_model_info_dir()
    assert (tree.path, tree.url, tree.how) == (TREE / "model_info", None, "found next to the installed robustbench")
    assert read_model_info(tree, *WRN)["clean_acc"] and server.requests == []
    with pytest.raises(ConfigError, match="is not RobustBench's model_info tree"):
        find_model_info_dir(tmp_path)
