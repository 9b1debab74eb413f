# promtool (rule/config checks, `promtool test rules`), prometheus and alertmanager for the
# deploy/ tests. Debian 12 ships Prometheus 2.42: its promtool has no fuzzy_compare (use round()).
# Tests start their own Prometheus on free loopback ports; they never use the packaged daemons.
APT_PACKAGES+=(prometheus prometheus-alertmanager)

# Sourced by scripts/install-tools.sh; runs after the apt step. Installing the packages may start
# their daemons (where no policy-rc.d forbids it) on :9090, :9093 and :9100, which would collide
# with CI's own servers: stop them and keep them from starting at boot. Idempotent.
tool_prometheus() {
    local svc
    for svc in prometheus prometheus-alertmanager; do
        [[ -e "/etc/init.d/$svc" ]] || continue
        if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
            systemctl disable --now "$svc" >/dev/null 2>&1 || true
        else
            "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
            update-rc.d "$svc" disable >/dev/null 2>&1 || true
        fi
    done
    command -v promtool >/dev/null || { echo "install-tools: promtool missing" >&2; return 1; }
}
