#!/usr/bin/env bash
# Schemathesis against the service's own OpenAPI document: no 5xx and no response that
# breaks the spec. Bounded: a fixed number of examples per operation, deterministic.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v schemathesis >/dev/null || { echo "FAIL: schemathesis is required (pip install schemathesis)" >&2; exit 1; }
export WRITER_API_TOKEN=check-token ADMIN_API_TOKEN=check-token
# shellcheck source=scripts/serve-for-checks.sh
source scripts/serve-for-checks.sh
trap 'kill "$SERVICE_PID" 2>/dev/null || true' EXIT
timeout 600 schemathesis run "${BASE_URL}/openapi.json" \
    --checks "${SCHEMATHESIS_CHECKS:-not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance}" \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" --generation-deterministic \
    -H "Authorization: Bearer check-token"
