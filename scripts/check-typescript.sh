#!/usr/bin/env bash
# The typed client the marketplace frontend generates: openapi-typescript turns the service's
# own /openapi.json into types, and tsc (strict) type-checks tests/typescript/form.ts against
# them — a frontend-like program that builds a form from rules and options and writes values,
# without a cast. Needs node and npm, and the packages pinned in tests/typescript (npm registry).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v npm >/dev/null || { echo "FAIL: node and npm are required (Debian packages nodejs, npm)" >&2; exit 1; }
# shellcheck source=scripts/serve-for-checks.sh
source scripts/serve-for-checks.sh
trap 'kill "$SERVICE_PID" 2>/dev/null || true' EXIT
cd tests/typescript
npm ci --no-audit --no-fund --silent
mkdir -p generated
curl -fsS "${BASE_URL}/openapi.json" -o generated/openapi.json
npx --no-install openapi-typescript generated/openapi.json -o generated/api.d.ts
npx --no-install tsc -p tsconfig.json
echo "typed client: form.ts type-checks (strict) against the types generated from /openapi.json"
