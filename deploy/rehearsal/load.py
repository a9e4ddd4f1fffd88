"""User load for the deploy rehearsal, through the router, until a stop file appears (or a
time bound passes): category forms (v2 and v1), listing pages, batch reads for a results page,
and writes (PATCH of a listing's year). Half of the users carry a stable X-User-Id. Each writer
thread owns its own listings and writes them one at a time, so the last acknowledged write of a
listing is its final value. Every request is recorded: time, kind, status (or "reset" /
"timeout"); every acknowledged write: listing and value.

Usage: load.py BASE_URL WRITER_TOKEN LISTINGS_FILE OUT_DIR STOP_FILE [THREADS] [MAX_SECONDS]
"""
import http.client
import json
import os
import random
import sys
import threading
import time
from urllib.parse import urlparse

BASE, TOKEN, LISTINGS_FILE, OUT, STOP = sys.argv[1:6]
THREADS = int(sys.argv[6]) if len(sys.argv) > 6 else 4
MAX_SECONDS = float(sys.argv[7]) if len(sys.argv) > 7 else 1800
CATEGORIES = [1311, 1301, 1101, 1102, 1410, 1402, 1201, 1302]
HOST = urlparse(BASE)
with open(LISTINGS_FILE, encoding="utf-8") as f:
    LISTINGS = [int(line) for line in f if line.strip()]


def worker(index, requests, acknowledged):
    rng = random.Random(index)
    mine = LISTINGS[index::THREADS]
    user = f"user-{rng.randrange(1000)}" if index % 2 == 0 else None
    connection = None
    deadline = time.time() + MAX_SECONDS
    while not os.path.exists(STOP) and time.time() < deadline:
        if connection is None:
            connection = http.client.HTTPConnection(HOST.hostname, HOST.port, timeout=10)
        roll = rng.random()
        headers = {"X-User-Id": user} if user else {}
        body = None
        method = "GET"
        if roll < 0.35:
            kind, path = "form", f"/api/v2/marketplace/categories/{rng.choice(CATEGORIES)}/attributes?lang=en"
        elif roll < 0.5:
            kind, path = "form_v1", f"/api/v1/marketplace/categories/{rng.choice(CATEGORIES)}/attributes"
        elif roll < 0.75:
            kind, path = "listing", f"/api/v2/marketplace/listings/{rng.choice(LISTINGS)}/attributes"
        elif roll < 0.9:
            ids = ",".join(str(i) for i in rng.sample(LISTINGS, 20))
            kind, path = "batch", f"/api/v2/marketplace/listings/attributes?ids={ids}"
        else:
            listing, year = rng.choice(mine), rng.randrange(1990, 2026)
            kind, method = "write", "PATCH"
            path = f"/api/v2/marketplace/listings/{listing}/attributes"
            body = json.dumps({"year": year})
            headers.update({"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        started = time.time()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
        except TimeoutError:
            status = "timeout"
            connection.close()
            connection = None
        except (ConnectionError, http.client.HTTPException, OSError):
            status = "reset"
            connection.close()
            connection = None
        requests.append((started, round(time.time() - started, 4), kind, status))
        if kind == "write" and status == 200:
            acknowledged.append((time.time(), listing, year))
        time.sleep(0.005)


def main():
    requests, acknowledged = [], []
    threads = [
        threading.Thread(target=worker, args=(i, requests, acknowledged)) for i in range(THREADS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(os.path.join(OUT, "requests.json"), "w", encoding="utf-8") as f:
        json.dump(requests, f)
    with open(os.path.join(OUT, "acknowledged.json"), "w", encoding="utf-8") as f:
        json.dump(acknowledged, f)
    print(f"load: {len(requests)} requests, {len(acknowledged)} acknowledged writes")


main()
