"""A local stand-in for the Hugging Face hub's HTTP API, on 127.0.0.1 only: the endpoints an upload uses
(create repo, create branch, validate the model card's YAML, preupload, commit). It keeps what it receives so
tests can compare it with the files on disk. Every file is answered as a "regular" upload, so its bytes arrive
inline (base64) in the commit."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import yaml


class FakeHub:
    def __init__(self):
        self.repos: list[dict] = []  # create-repo payloads
        self.branches: list[tuple[str, str]] = []  # (repo_id, branch)
        self.commits: list[dict] = []  # {"repo_id", "revision", "message", "files": {path: bytes}}
        self.cards: list[dict] = []  # model-card metadata sent for validation, parsed
        self.unknown: list[str] = []  # requests no route answered
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                path = unquote(urlparse(self.path).path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if path == "/api/repos/create":
                    payload = json.loads(body)
                    hub.repos.append(payload)
                    repo_id = f"{payload['organization']}/{payload['name']}"
                    return self._reply(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": repo_id})
                if path == "/api/validate-yaml":  # the README's front matter must be a YAML mapping
                    front = re.match(r"---\n(.*?)\n---\n", json.loads(body)["content"], re.S)
                    try:
                        meta = yaml.safe_load(front[1]) if front else None
                    except yaml.YAMLError as e:
                        meta = str(e)
                    if not isinstance(meta, dict):
                        return self._reply(400, {"errors": [{"message": f"not a mapping: {meta!r}"}]})
                    hub.cards.append(meta)
                    return self._reply(200, {"errors": [], "warnings": []})
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/branch/(.+)", path):
                    hub.branches.append((m[1], m[2]))
                    return self._reply(200, {})
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/(.+)", path):
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
                if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/(.+)", path):
                    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                    header = next(item["value"] for item in lines if item["key"] == "header")
                    files = {item["value"]["path"]: base64.b64decode(item["value"]["content"])
                             for item in lines if item["key"] == "file"}
                    hub.commits.append({"repo_id": m[1], "revision": m[2], "message": header.get("summary"),
                                        "files": files})
                    oid = f"{len(hub.commits):040x}"
                    return self._reply(200, {"commitUrl": f"{hub.url}/{m[1]}/commit/{oid}", "commitOid": oid,
                                             "pullRequestUrl": None})
                hub.unknown.append(f"POST {path}")
                return self._reply(404, {"error": f"fake hub: no route for POST {path}"})

            def do_GET(self):
                hub.unknown.append(f"GET {self.path}")
                return self._reply(404, {"error": f"fake hub: no route for GET {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
