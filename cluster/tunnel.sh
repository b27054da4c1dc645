#!/usr/bin/env bash
# Forward Hemma's Ray Client (10001) and dashboard (8265) ports to this machine's loopback.
#   cluster/tunnel.sh [HOST]     HOST: an ssh alias, default "hemma"
# Refuses to start if either local port is already taken (an old tunnel, a local Ray).
# Then: export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or put the token in
# ~/.ray/auth_token) and use address ray://127.0.0.1:10001.
set -euo pipefail

host="${1:-hemma}"
ports=(10001 8265)

port_taken() {
    # Something accepts connections on 127.0.0.1:$1.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for port in "${ports[@]}"; do
    if port_taken "$port"; then
        echo "tunnel.sh: local port $port is already in use (an open tunnel? a local Ray?);" \
            "close it first (e.g. 'ss -ltnp | grep :$port')" >&2
        exit 1
    fi
done

if [[ -z "${RAY_AUTH_TOKEN:-}" && ! -s "${HOME}/.ray/auth_token" ]]; then
    echo "tunnel.sh: note: no RAY_AUTH_TOKEN and no ~/.ray/auth_token; copy the token with" \
        "'ssh ${host} cat hemma_features/docker/secrets/ray_auth_token > ~/.ray/auth_token'" >&2
fi

forwards=()
for port in "${ports[@]}"; do
    forwards+=(-L "127.0.0.1:${port}:127.0.0.1:${port}")
done
echo "tunnel.sh: forwarding ${ports[*]} from ${host}; Ctrl-C to close" >&2
exec ssh -N -o ExitOnForwardFailure=yes -o ServerAliveInterval=30 "${forwards[@]}" "${host}"
