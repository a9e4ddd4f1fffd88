#!/usr/bin/env bash
# Runs a built image as a container runtime would — its root filesystem, its user, its
# entrypoint, nothing from this machine — against PostgreSQL, and checks what a pod needs:
#   deploy/image/smoke.sh IMAGE POSTGRES_ADMIN_URL
# The image is mounted (buildah) and its entrypoint run by chroot as user 10001 (containers
# cannot be started here). Checks: no shell in the image, a non-root user; the service
# migrates a fresh database, seeds the demo, becomes ready, answers a read and a write, and
# stops cleanly (exit 0) on SIGTERM. Stops and removes everything it started.
set -euo pipefail

image=${1:?usage: smoke.sh IMAGE POSTGRES_ADMIN_URL}
admin_url=${2:?usage: smoke.sh IMAGE POSTGRES_ADMIN_URL}
buildah() { command buildah --storage-driver vfs "$@"; }
fail() { echo "image smoke: FAILED: $*" >&2; exit 1; }

database="ua_test_image_$$"
base_url=${admin_url%/*}
container=$(buildah from "$image")
mount=$(buildah mount "$container")
pid=
cleanup() {
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
    buildah umount "$container" >/dev/null 2>&1 || true
    buildah rm "$container" >/dev/null 2>&1 || true
    psql "$admin_url" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if [ -e "$mount/bin/sh" ] || [ -e "$mount/usr/bin/sh" ]; then fail "the image has a shell"; fi
config=$(buildah inspect --type image "$image" |
    python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["OCIv1"]["config"]))')
user=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get("User", ""))' "$config")
[ "$user" = "10001:10001" ] || fail "the image runs as '$user', not 10001:10001"

psql "$admin_url" -qc "CREATE DATABASE $database" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token="image-smoke-token"
# The entrypoint and command as the image declares them, the environment as a pod gives it.
chroot=$(command -v chroot)
readarray -t command < <(python3 -c '
import json, sys
config = json.loads(sys.argv[1])
print("\n".join((config.get("Entrypoint") or []) + (config.get("Cmd") or [])))' "$config")
env -i DATABASE_URL="$base_url/$database" WRITER_API_TOKEN="$token" \
    APP__SERVER__BIND="127.0.0.1:$port" APP__DEMO__SEED_ON_FIRST_START=true \
    APP__DEMO__LISTINGS=60 APP__TELEMETRY__FORMAT=json \
    "$chroot" --userspec=10001:10001 "$mount" "${command[@]}" >"${TMPDIR:-/tmp}/image-smoke.log" 2>&1 &
pid=$!

address="http://127.0.0.1:$port"
for _ in $(seq 1 150); do
    curl -fsS "$address/health/ready" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "${TMPDIR:-/tmp}/image-smoke.log" >&2; fail "the service exited before it was ready"; }
    sleep 0.2
done
curl -fsS "$address/health/ready" >/dev/null || fail "not ready after 30 s"
echo "image smoke: ready"

read_body=$(curl -fsS "$address/api/v2/marketplace/categories/1311/attributes")
grep -q '"code":"year"' <<<"$read_body" || fail "the category read lacks year: $read_body"
echo "image smoke: a read answered"

written=$(curl -fsS -X PATCH -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    --data '{"year": 2012}' "$address/api/v2/marketplace/listings/6/attributes")
grep -q '"value":2012' <<<"$written" || fail "the write did not answer its value: $written"
curl -fsS "$address/api/v2/marketplace/listings/6/attributes" | grep -q '"value":2012' ||
    fail "the write is not read back"
echo "image smoke: a write committed and read back"

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
[ "$status" -eq 0 ] || { cat "${TMPDIR:-/tmp}/image-smoke.log" >&2; fail "exit status $status after SIGTERM"; }
echo "image smoke: stopped cleanly on SIGTERM"
