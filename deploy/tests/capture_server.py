"""A local stand-in for Prometheus and a Slack incoming webhook, for deploy.sh's tests.

Answers GET /-/ready, GET /api/v1/query (error ratio, p95 and green's request rate from
ERROR_RATIO, P95_SECONDS and REQUEST_RATE; "none" answers an empty result)
and records every POST /slack body as one line in the file given as the first argument.
The port it listens on is written to the second argument. Stops after STOP_AFTER seconds.
"""
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

MESSAGES, PORT_FILE = sys.argv[1], sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def _reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/-/ready":
            self._reply(200, {"status": "ready"})
        elif url.path == "/api/v1/query":
            query = parse_qs(url.query).get("query", [""])[0]
            if "histogram_quantile" in query:
                value = os.environ["P95_SECONDS"]
            elif " / " in query:
                value = os.environ["ERROR_RATIO"]
            else:
                value = os.environ.get("REQUEST_RATE", "5")
            result = [] if value == "none" else [{"metric": {}, "value": [0, value]}]
            self._reply(200, {"status": "success", "data": {"resultType": "vector", "result": result}})
        else:
            self._reply(404, {"status": "error"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length).decode()
        if self.path == "/slack":
            with open(MESSAGES, "a", encoding="utf-8") as out:
                out.write(json.loads(body)["text"] + "\n")
            self._reply(200, {"ok": True})
        else:
            self._reply(404, {"ok": False})

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE, "w", encoding="utf-8") as out:
    out.write(str(server.server_address[1]))
threading.Timer(float(os.environ.get("STOP_AFTER", "120")), server.shutdown).start()
server.serve_forever()
