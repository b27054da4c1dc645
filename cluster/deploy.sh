#!/usr/bin/env bash
# On Hemma, in the repository checkout: update it with git and (re)start the Ray head.
#   cluster/deploy.sh            git pull --ff-only, build, start, wait until healthy
# Code reaches Hemma only through git (never scp), so what runs is a commit.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
compose_file="${repo}/docker/docker-compose.hemma.yml"
secret="${repo}/docker/secrets/ray_auth_token"
compose=(docker compose -p hemma-features -f "${compose_file}" --profile hemma-features)

cd "${repo}"
if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
    echo "deploy.sh: the checkout has local changes; commit or stash them first" >&2
    exit 1
fi
git pull --ff-only

if [[ ! -s "${secret}" ]]; then
    mkdir -p "$(dirname "${secret}")"
    chmod 700 "$(dirname "${secret}")"
    (umask 022 && python3 -c 'import secrets; print(secrets.token_hex(32))' > "${secret}")
    echo "deploy.sh: created a new Ray auth token in ${secret}; copy it to the laptop's ~/.ray/auth_token" >&2
fi

"${compose[@]}" up -d --build
echo "deploy.sh: running $(git rev-parse --short HEAD); waiting for the head to be healthy" >&2
exec "${repo}/cluster/health.sh" --wait 180
