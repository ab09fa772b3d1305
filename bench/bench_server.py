"""The real server binary on a fresh data directory, for the Python benchmarks:

    with BenchServer(binary) as s:
        s.call("POST", "/api/v1/projects", {"key": "bench", "environments": ["production"]})
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

TOKEN = "bench-admin-token-0123456789"


class BenchServer:
    def __init__(self, binary, prefix="gonfalon-bench-"):
        self.binary = binary
        self.prefix = prefix
        self.port = None

    def __enter__(self):
        self.data_dir = tempfile.mkdtemp(prefix=self.prefix)
        env = dict(os.environ, GONFALON_ADMIN_TOKEN=TOKEN)
        out_path = os.path.join(self.data_dir, "server.out")
        self.server = subprocess.Popen(
            [self.binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(self.data_dir, "db")],
            stdout=open(out_path, "w"), stderr=subprocess.DEVNULL, env=env)
        deadline = time.time() + 20
        while self.port is None and time.time() < deadline:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(out_path).read())
            if m:
                self.port = int(m.group(1))
            else:
                time.sleep(0.05)
        if self.port is None:
            self.__exit__(None, None, None)
            raise RuntimeError("the server did not start")
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2)
                break
            except Exception:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.terminate()
        self.server.wait(timeout=20)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def call(self, method, path, body=None, token=TOKEN):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")
