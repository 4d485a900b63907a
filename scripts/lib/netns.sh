# shellcheck shell=bash
# Shared by the scripts that run peers inside a network namespace of their own
# (embassy-e2e.sh, qemu-e2e.sh, autobahn-embassy.sh). Source it after setting:
#   NS    the namespace name (unique per run, e.g. roomwire-e2e-$$)
#   PIDS  an array the script appends the background processes it starts to
# and define `fail MESSAGE` (print, then exit non-zero).

# Kill what the script started and everything left in the namespace, then
# delete the namespace: on success and on failure alike (trap netns_cleanup EXIT).
netns_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if ip netns list 2>/dev/null | grep -qw "$NS"; then
        ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null || true
        ip netns del "$NS" || true
    fi
}

# Root, /dev/net/tun, and the Debian packages named (iproute2 always),
# installed only when their command is missing. Arguments: PACKAGE:COMMAND ...
netns_preflight() {
    [ "$(id -u)" -eq 0 ] || fail "must run as root (TAP device and network namespace)"
    [ -e /dev/net/tun ] || fail "/dev/net/tun is missing"
    local need=() spec
    for spec in iproute2:ip "$@"; do
        command -v "${spec#*:}" >/dev/null || need+=("${spec%%:*}")
    done
    if ((${#need[@]})); then
        echo "installing ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

# Create the namespace $NS with loopback up and a TAP device TAP holding
# ADDRESS/PREFIX (the host side; the embassy-net stack takes another address).
netns_create_tap() {
    local tap="$1" address="$2"
    ip netns add "$NS"
    ip netns exec "$NS" ip link set lo up
    ip netns exec "$NS" ip tuntap add name "$tap" mode tap
    ip netns exec "$NS" ip addr add "$address" dev "$tap"
    ip netns exec "$NS" ip link set "$tap" up
}
