# redis-server: the shared store behind replicas (tests/redis, bench/replicas.py); redis-cli joins
# the test cluster (tests/redis/test_cluster.py), openssl makes the TLS test's throwaway CA.
# Sourced by scripts/install-tools.sh. Tests start their own redis-server on free loopback ports
# with a temporary directory; they never use the packaged daemon, so stop it and keep it from
# starting at boot (it would sit on :6379). Idempotent.
APT_PACKAGES+=(redis-server redis-tools openssl)

tool_redis() {
    if [[ -e /etc/init.d/redis-server ]]; then
        if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
            systemctl disable --now redis-server >/dev/null 2>&1 || true
        else
            /etc/init.d/redis-server stop >/dev/null 2>&1 || true
            update-rc.d redis-server disable >/dev/null 2>&1 || true
        fi
    fi
    local tool
    for tool in redis-server redis-cli openssl; do
        command -v "$tool" >/dev/null || { echo "install-tools: $tool missing" >&2; return 1; }
    done
}
