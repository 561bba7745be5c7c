"""A target for trying jobqueue: answers every request with 200 and a JSON echo of what
it received, and prints one line per request.

    python3 examples/echo_target.py 8080
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        echo = {
            "method": self.command,
            "path": self.path,
            "body": body,
            "idempotency_key": self.headers.get("Idempotency-Key"),
        }
        key = echo["idempotency_key"] or "-"
        print(f"{self.command} {self.path} key={key} {body}", flush=True)
        out = json.dumps(echo).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = answer

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    server = ThreadingHTTPServer(("127.0.0.1", port), Echo)
    print(f"echo target on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
