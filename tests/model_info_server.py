"""A static file server on 127.0.0.1 standing in for RobustBench's repository (its raw model_info files).

``ModelInfoServer(root)`` serves the files under ``root`` (by default the copy of RobustBench's model_info
tree in tests/data) at ``{server.url}/model_info/...``, answers 404 for anything else, and records each
request path in ``server.requests``.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TREE = Path(__file__).parent / "data" / "robustbench-model-info-tree"   # holds model_info/


class ModelInfoServer:
    def __init__(self, root: Path = TREE):
        self.root = Path(root)
        self.requests: list[str] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):   # keep pytest output clean
                pass

            def do_GET(self):
                server.requests.append(self.path)
                if not self.path.startswith("/model_info/") or self.path.endswith("/"):
                    self.send_error(404)    # no directory listings: RobustBench's raw files are files only
                    return
                super().do_GET()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(self.root)))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL of the served model_info tree."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/model_info"

    def __enter__(self) -> "ModelInfoServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
