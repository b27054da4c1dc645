#!/usr/bin/env bash
# On Hemma: is the Ray head container up, healthy, and does a worker see the GPU?
#   cluster/health.sh [--wait SECONDS]
# Exit status 0 when healthy. From the laptop, `hemma-features doctor` checks the rest
# (tunnel, token, versions, models, LanguageTool, disk).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
compose=(docker compose -p hemma-features -f "${repo}/docker/docker-compose.hemma.yml" --profile hemma-features)
wait_s=0
if [[ "${1:-}" == "--wait" ]]; then
    wait_s="${2:-120}"
fi

container="$("${compose[@]}" ps -q ray-head)"
if [[ -z "${container}" ]]; then
    echo "health.sh: the ray-head container is not running (cluster/deploy.sh starts it)" >&2
    exit 1
fi

deadline=$((SECONDS + wait_s))
status="$(docker inspect --format '{{.State.Health.Status}}' "${container}")"
while [[ "${status}" != "healthy" && ${SECONDS} -lt ${deadline} ]]; do
    sleep 5
    status="$(docker inspect --format '{{.State.Health.Status}}' "${container}")"
done
echo "container ${container:0:12}: ${status}"
if [[ "${status}" != "healthy" ]]; then
    "${compose[@]}" logs --tail 40 ray-head >&2 || true
    exit 1
fi

"${compose[@]}" exec -T ray-head ray status
"${compose[@]}" exec -T ray-head python3 -c '
import sys, torch
ok = torch.cuda.is_available() and bool(torch.version.hip)
name = torch.cuda.get_device_name(0) if ok else "none"
print(f"torch {torch.__version__} hip {torch.version.hip} GPU: {name}")
sys.exit(0 if ok else 1)
'
"${compose[@]}" exec -T ray-head df -h /data/hemma /data/hf-cache
