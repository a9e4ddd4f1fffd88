"""The rehearsal's evidence for one scenario, from what the users saw, what the team heard and
what Prometheus scraped: failed user requests, every acknowledged write read back through the
router, the time of each phase and rollback, p95 and error rate per phase (Prometheus, and the
users' own timings). Prints a markdown section and appends it to OUT/../rehearsal.md; exit 1 when
a request failed or an acknowledged write is not readable.

Usage: report.py SCENARIO OUT_DIR ROUTER_URL PROMETHEUS_URL DEPLOY_EXIT EXPECTED_EXIT VERIFY
"""
import json
import os
import sys
import urllib.parse
import urllib.request

SCENARIO, OUT, ROUTER, PROMETHEUS, DEPLOY_EXIT, EXPECTED_EXIT, VERIFY = sys.argv[1:8]


def read_json(name):
    with open(os.path.join(OUT, name), encoding="utf-8") as f:
        return json.load(f)


def prometheus(query, at):
    url = f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": query, "time": at})
    with urllib.request.urlopen(url, timeout=10) as r:
        result = json.load(r)["data"]["result"]
    if not result or result[0]["value"][1] in ("NaN", "+Inf"):
        return None
    return float(result[0]["value"][1])


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


requests = read_json("requests.json")
acknowledged = read_json("acknowledged.json")
failed = [r for r in requests if not (isinstance(r[3], int) and 200 <= r[3] < 300)]

# The final value of each listing: its last acknowledged write (one writer per listing).
final = {}
for _, listing, year in sorted(acknowledged):
    final[listing] = year
missing, sources = [], {}
for listing, year in sorted(final.items()):
    request = urllib.request.Request(
        f"{ROUTER}/api/v2/marketplace/listings/{listing}/attributes",
        headers={"X-User-Id": "rehearsal-check"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        body = json.load(r)
        source = r.headers.get("X-Attributes-Source", "?")
    sources[source] = sources.get(source, 0) + 1
    values = {v["code"]: v["value"] for v in body["data"]["values"]}
    if values.get("year") != year:
        missing.append((listing, year, values.get("year")))

# Phases and rollbacks from the notifications: "<name> started" … "<name> passed|rolled back|…".
events = []
with open(os.path.join(OUT, "notifications.log"), encoding="utf-8") as f:
    for line in f:
        at, text = line.rstrip("\n").split("\t", 1)
        events.append((float(at), text.split(": ", 1)[-1]))
def key(text):
    """`phase 3 (progressive switch) started` and `phase 3 rolled back` are both phase 3."""
    if text.startswith("phase "):
        return " ".join(text.split()[:2])
    return text


spans, open_spans, failed_at = [], {}, {}
for at, text in events:
    if text.endswith(" started"):
        name = text[: -len(" started")]
        open_spans[key(name)] = (name, at)
    elif " FAILED" in text and text.startswith("phase "):
        failed_at[key(text)] = (text.split(":", 1)[0] + ": " + text.split(": ", 1)[-1].split(";")[0], at)
    for end in (" passed", " rolled back", " done"):
        if text.endswith(end) and key(text[: -len(end)]) in open_spans:
            name, start = open_spans.pop(key(text[: -len(end)]))
            spans.append((name, start, at, end.strip()))
            if end == " rolled back" and key(name) in failed_at:
                reason, failed_since = failed_at.pop(key(name))
                spans.append((f"rollback after {reason}", failed_since, at, "done"))

rows = []
for name, start, end, outcome in spans:
    window = max(5, int(end - start) + 1)
    p95 = prometheus(
        f"histogram_quantile(0.95, sum by (le) (increase(unified_attributes_response_time_bucket[{window}s])))",
        end,
    )
    errors = prometheus(
        f'(sum(increase(unified_attributes_requests_total{{status="5xx"}}[{window}s])) or vector(0)) / sum(increase(unified_attributes_requests_total[{window}s]))',
        end,
    )
    seen = [r for r in requests if start <= r[0] <= end]
    client_p95 = percentile([r[1] for r in seen], 0.95)
    bad = sum(1 for r in seen if not (isinstance(r[3], int) and 200 <= r[3] < 300))
    rows.append(
        f"| {name} | {outcome} | {end - start:.1f} s | {len(seen)} | {bad} | "
        + (f"{p95 * 1000:.1f} ms" if p95 is not None else "no data")
        + " | "
        + (f"{errors * 100:.2f} %" if errors is not None else "no data")
        + " | "
        + (f"{client_p95 * 1000:.1f} ms" if client_p95 is not None else "–")
        + " |"
    )

ok = not failed and not missing and DEPLOY_EXIT == EXPECTED_EXIT
lines = [
    f"### Scenario {SCENARIO}: {'PASS' if ok else 'FAIL'}",
    "",
    f"- deploy/rollback exit code: {DEPLOY_EXIT} (expected {EXPECTED_EXIT})",
    f"- user requests: {len(requests)}, failed (non-2xx, resets, timeouts): {len(failed)}",
    f"- acknowledged writes: {len(acknowledged)} on {len(final)} listings; read back through the router: "
    f"{len(final) - len(missing)} as acknowledged, {len(missing)} not (served by {sources})",
    f"- verify at the end: {VERIFY}",
    "",
    "| phase / rollback | outcome | took | user requests | failed | p95 (Prometheus) | 5xx (Prometheus) | p95 (users) |",
    "|---|---|---|---|---|---|---|---|",
    *rows,
    "",
]
if failed:
    by_status = {}
    for r in failed:
        by_status[str(r[3])] = by_status.get(str(r[3]), 0) + 1
    lines.append(f"failed requests by status: {by_status}; first: {failed[:3]}")
if missing:
    lines.append(f"writes not read back (listing, acknowledged, read): {missing[:5]}")
text = "\n".join(lines) + "\n"
print(text)
with open(os.path.join(OUT, "..", "rehearsal.md"), "a", encoding="utf-8") as f:
    f.write(text + "\n")
sys.exit(0 if ok else 1)
