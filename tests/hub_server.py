"""A small Hugging Face Hub-compatible HTTP server on 127.0.0.1, for tests.

It implements exactly the endpoints that the real ``huggingface_hub`` client
(2.x) calls for what SCORE Zoo does, so tests drive the unmodified client over
HTTP (``HF_ENDPOINT=http://127.0.0.1:PORT``) and never touch the internet:

- download: ``HEAD``/``GET /{repo_id}/resolve/{revision}/{path}`` answering
  ``X-Repo-Commit``, ``ETag`` (the git blob sha1), ``Content-Length`` and, for
  ``*.safetensors`` (stored as LFS on the real Hub), ``X-Linked-Etag`` (sha256)
  and ``X-Linked-Size``; errors carry ``X-Error-Code`` (``RepoNotFound``,
  ``RevisionNotFound``, ``EntryNotFound``) as the Hub does, so the client raises
  its typed errors. Revisions are branch names or full commit ids.
- card metadata: ``POST /api/validate-yaml`` (called before committing a
  README.md): the YAML front matter must parse and its ``model-index`` must
  hold task, dataset and metric types and values, else 400 with ``errors``.
- model info: ``GET /api/models/{repo_id}`` and ``/api/models/{repo_id}/revision/{rev}``.
- upload: ``POST /api/repos/create`` (409 when the repo exists),
  ``POST /api/models/{repo_id}/preupload/{rev}`` answering ``regular`` for every
  file (so neither LFS nor Xet transfers are needed), and
  ``POST /api/models/{repo_id}/commit/{rev}`` taking the NDJSON commit with
  base64 inline files. Commits live in memory with sha1 commit ids and parents.
- write endpoints require an ``Authorization: Bearer`` token (``HF_TOKEN``).
- any other path is served from ``static`` (an "origin" web server for the
  authors' original checkpoints, or a Google Drive stand-in), keyed by path
  or by ``path?query``.

Fault switches (``server.faults``), each a set of file paths unless noted:
``tamper`` (flip bytes in the body, headers unchanged: a corrupted mirror),
``truncate`` (GET sends only half the body, with an honest Content-Length for
that half, while HEAD announces the full size; for a ``static`` key: the full
Content-Length, half the body, then the connection closes), ``error500`` (GET answers 500),
``hang`` (``static`` keys whose GET waits, without answering, until ``server.release``
is set: a download that is in flight for certain), and ``down`` (bool: every request
answers 503). ``server.requests`` logs
``(method, path)`` of every request, to assert that a warm cache makes none.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.pt filter=lfs diff=lfs merge=lfs -text\n"
LFS_SUFFIXES = (".safetensors", ".pt", ".bin")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub uses as ETag of regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)

    def commit(self, branch: str, message: str, files: dict[str, bytes]) -> Commit:
        parent = self.branches.get(branch)
        tree = json.dumps({p: git_blob_sha1(b) for p, b in sorted(files.items())}).encode()
        oid = hashlib.sha1(b"%s\n%s\n%s\n%f" % ((parent or "").encode(), tree, message.encode(), time.time())).hexdigest()
        c = Commit(oid, parent, message, dict(files))
        self.commits[oid] = c
        self.branches[branch] = oid
        return c


class HubServer:
    """The server; use as a context manager. ``url`` is its ``HF_ENDPOINT``."""

    def __init__(self, token: str | None = "hf_test_token"):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.static: dict[str, bytes] = {}
        self.faults: dict = {"tamper": set(), "truncate": set(), "error500": set(), "hang": set(), "down": False}
        self.release = threading.Event()
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def clear_faults(self) -> None:
        self.faults.update(tamper=set(), truncate=set(), error500=set(), hang=set(), down=False)

    def create_repo(self, repo_id: str, private: bool = False) -> Repo:
        with self._lock:
            repo = Repo(repo_id, private)
            repo.commit("main", "initial commit", {".gitattributes": GITATTRIBUTES})
            self.repos[repo_id] = repo
            return repo


def validate_card_yaml(readme: str) -> list[str]:
    """The problems the Hub would report in a README's YAML front matter (a subset of its checks)."""
    import yaml

    if not readme.startswith("---\n"):
        return []
    try:
        meta = yaml.safe_load(readme[4:].split("\n---", 1)[0]) or {}
    except yaml.YAMLError as e:
        return [f"YAML does not parse: {e}"]
    if not isinstance(meta, dict):
        return ["front matter must be a mapping"]
    errors = []
    for model in meta.get("model-index") or []:
        for result in model.get("results") or []:
            if not (result.get("task") or {}).get("type"):
                errors.append("model-index result without task.type")
            if not {"type", "name"} <= set(result.get("dataset") or {}):
                errors.append("model-index result without dataset.type and dataset.name")
            for metric in result.get("metrics") or []:
                if "type" not in metric or "value" not in metric:
                    errors.append("model-index metric without type and value")
    return errors


def _make_handler(server: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        # -- plumbing ------------------------------------------------------
        def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
                  content_length: int | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, obj, headers: dict | None = None) -> None:
            self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _error(self, status: int, code: str | None, message: str, headers: dict | None = None) -> None:
            h = {"X-Error-Message": message, **(headers or {})}
            if code:
                h["X-Error-Code"] = code
            self._json(status, {"error": message}, h)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _authorized(self) -> bool:
            return server.token is None or self.headers.get("Authorization") == f"Bearer {server.token}"

        def _route(self) -> None:
            path = unquote(urlsplit(self.path).path)
            with server._lock:
                server.requests.append((self.command, path))
            if server.faults["down"]:
                return self._error(503, None, "service unavailable")
            if path.startswith("/api/"):
                return self._api(path)
            if "/resolve/" in path:
                return self._resolve(path)
            query = urlsplit(self.path).query
            key = f"{path}?{query}" if f"{path}?{query}" in server.static else path
            if key in server.static and self.command in ("GET", "HEAD"):
                return self._static(key)
            self._error(404, None, f"not found: {path}")

        do_GET = do_HEAD = do_POST = lambda self: self._route()  # noqa: E731

        def _static(self, key: str) -> None:
            data = server.static[key]
            content_type = "text/html; charset=utf-8" if data.lstrip()[:1] == b"<" else "application/octet-stream"
            if key in server.faults["hang"] and self.command == "GET":
                server.release.wait(timeout=120)
            if key in server.faults["truncate"] and self.command == "GET":
                self.close_connection = True     # announce the full size, send half, hang up
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                return
            self._send(200, data, {"Content-Type": content_type})

        # -- downloads -----------------------------------------------------
        def _resolve(self, path: str) -> None:
            repo_part, rest = path.lstrip("/").split("/resolve/", 1)
            revision, _, filename = rest.partition("/")
            repo = server.repos.get(repo_part)
            if repo is None or (repo.private and not self._authorized()):
                return self._error(401, "RepoNotFound", "Repository not found")
            commit = repo.resolve(revision)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if filename not in commit.files:
                return self._error(404, "EntryNotFound", f"{filename} does not exist at {revision}",
                                   {"X-Repo-Commit": commit.oid})
            data = commit.files[filename]
            headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{git_blob_sha1(data)}"',
                       "Content-Type": "application/octet-stream", "Accept-Ranges": "none"}
            if filename.endswith(LFS_SUFFIXES):
                headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
                headers["X-Linked-Size"] = str(len(data))
            if self.command == "HEAD":
                return self._send(200, b"", headers, content_length=len(data))
            if filename in server.faults["error500"]:
                return self._error(500, None, "internal error")
            if filename in server.faults["tamper"]:
                data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
            if filename in server.faults["truncate"]:
                data = data[: len(data) // 2]
            self._send(200, data, headers)

        # -- API -----------------------------------------------------------
        def _api(self, path: str) -> None:
            if path == "/api/repos/create" and self.command == "POST":
                return self._create_repo()
            if path == "/api/validate-yaml" and self.command == "POST":
                errors = validate_card_yaml(json.loads(self._body())["content"])
                return self._json(400 if errors else 200, {"errors": [{"message": m} for m in errors], "warnings": []})
            if path.startswith("/api/models/"):
                rest = path[len("/api/models/"):]
                for action in ("/preupload/", "/commit/", "/revision/"):
                    if action in rest:
                        repo_id, revision = rest.split(action, 1)
                        return self._repo_action(repo_id, action.strip("/"), revision)
                return self._repo_action(rest, "revision", "main")
            self._error(404, None, f"unknown API path {path}")

        def _create_repo(self) -> None:
            payload = json.loads(self._body() or b"{}")
            if not self._authorized():
                return self._error(401, None, "Invalid credentials in Authorization header")
            repo_id = "/".join(p for p in (payload.get("organization"), payload["name"]) if p)
            url = f"{server.url}/{repo_id}"
            if repo_id in server.repos:
                return self._json(409, {"error": "You already created this model repo", "url": url})
            private = payload.get("private") or payload.get("visibility") == "private"
            server.create_repo(repo_id, private=bool(private))
            self._json(200, {"url": url, "name": repo_id})

        def _repo_action(self, repo_id: str, action: str, revision: str) -> None:
            repo = server.repos.get(repo_id)
            writing = action in ("preupload", "commit")
            if repo is None or ((repo.private or writing) and not self._authorized()):
                return self._error(401 if repo is None else 403, "RepoNotFound", "Repository not found")
            if action == "revision" and self.command == "GET":
                commit = repo.resolve(revision)
                if commit is None:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                return self._json(200, {
                    "id": repo_id, "modelId": repo_id, "sha": commit.oid, "private": repo.private,
                    "siblings": [{"rfilename": p} for p in sorted(commit.files)], "tags": [],
                })
            if action == "preupload" and self.command == "POST":
                files = json.loads(self._body())["files"]
                return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                  for f in files]})
            if action == "commit" and self.command == "POST":
                return self._commit(repo, revision)
            self._error(405, None, f"{self.command} not supported on {action}")

        def _commit(self, repo: Repo, revision: str) -> None:
            lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
            header = next((ln["value"] for ln in lines if ln["key"] == "header"), {})
            with server._lock:
                base = repo.resolve(revision)
                if base is None:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                files = dict(base.files)
                for line in lines:
                    key, value = line["key"], line["value"]
                    if key == "file":
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif key == "deletedFile":
                        files.pop(value["path"], None)
                    elif key != "header":
                        return self._error(400, None, f"this test server does not support '{key}' operations")
                if revision not in repo.branches:
                    return self._error(400, None, f"commits go to a branch, not to '{revision}'")
                commit = repo.commit(revision, header.get("summary", ""), files)
            self._json(200, {"commitUrl": f"{server.url}/{repo.repo_id}/commit/{commit.oid}",
                             "commitOid": commit.oid, "pullRequestUrl": None})

    return Handler


def use_hub_server(monkeypatch, server: HubServer, tmp_path) -> None:
    """Point huggingface_hub and SCORE Zoo at ``server`` with a fresh cache and user registry."""
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "SCORE_ZOO_ORIGIN_ENDPOINT", "SCORE_ZOO_GDRIVE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_TOKEN", server.token or "")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("SCORE_ZOO_REGISTRY", str(tmp_path / "registry.json"))
    # huggingface_hub reads HF_ENDPOINT / HF_HOME once, at import: libraries that call it without
    # an endpoint or cache (timm) must see what they would if these were set before Python started.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
