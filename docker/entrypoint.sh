#!/usr/bin/env bash
# Start the Ray head in the foreground (--block) with ports and resources from the
# environment. Refuses to start without token authentication unless told otherwise.
set -euo pipefail

: "${RAY_GCS_PORT:=6379}"
: "${RAY_CLIENT_PORT:=10001}"
: "${RAY_DASHBOARD_PORT:=8265}"
: "${RAY_NUM_CPUS:=}"
: "${RAY_NUM_GPUS:=}"
: "${RAY_OBJECT_STORE_MEMORY:=}"

if [[ "${RAY_AUTH_MODE:-}" != "token" && "${HEMMA_ALLOW_NO_AUTH:-0}" != "1" ]]; then
    echo "refusing to start: RAY_AUTH_MODE must be 'token' (set HEMMA_ALLOW_NO_AUTH=1 to override)" >&2
    exit 64
fi
if [[ "${RAY_AUTH_MODE:-}" == "token" && -z "${RAY_AUTH_TOKEN:-}" ]]; then
    if [[ -z "${RAY_AUTH_TOKEN_PATH:-}" || ! -s "${RAY_AUTH_TOKEN_PATH}" ]]; then
        echo "refusing to start: token auth needs RAY_AUTH_TOKEN or a non-empty RAY_AUTH_TOKEN_PATH" >&2
        exit 64
    fi
fi

args=(
    start --head --block
    "--port=${RAY_GCS_PORT}"
    "--ray-client-server-port=${RAY_CLIENT_PORT}"
    --dashboard-host=0.0.0.0
    "--dashboard-port=${RAY_DASHBOARD_PORT}"
    --disable-usage-stats
)
[[ -n "${RAY_NUM_CPUS}" ]] && args+=("--num-cpus=${RAY_NUM_CPUS}")
[[ -n "${RAY_NUM_GPUS}" ]] && args+=("--num-gpus=${RAY_NUM_GPUS}")
[[ -n "${RAY_OBJECT_STORE_MEMORY}" ]] && args+=("--object-store-memory=${RAY_OBJECT_STORE_MEMORY}")

exec ray "${args[@]}" "$@"
