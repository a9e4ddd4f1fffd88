"""The team's chat for the deploy rehearsal: records each notification deploy.sh (or run.sh)
posts, with the time it arrived, one per line ("<unix time>\t<text>"). Port in argv[2].
Stops after STOP_AFTER seconds (default 3600)."""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG, PORT_FILE = sys.argv[1], sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        with open(LOG, "a", encoding="utf-8") as out:
            out.write(f"{time.time():.3f}\t{json.loads(body)['text']}\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE, "w", encoding="utf-8") as out:
    out.write(str(server.server_address[1]))
threading.Timer(float(os.environ.get("STOP_AFTER", "3600")), server.shutdown).start()
server.serve_forever()
