# shellcheck shell=bash
# Test services for CI, meant to be `source`d by .ci/run (it exports variables and sets a trap).
#
# Starts three ClickHouse servers on loopback, each with its own config and data under one temp
# dir: a single server, and two servers that are the two shards of cluster `kansoku_test`.
# Exports KANSOKU_TEST_CLICKHOUSE_URL and KANSOKU_TEST_CLICKHOUSE_CLUSTER_URL for the tests.
# Also starts one redis-server on loopback (no persistence) for the gateway's shared state and
# exports KANSOKU_TEST_REDIS_URL.
#
# Local use: KANSOKU_SERVICES_KEEP=1 source .ci/services.sh  leaves the servers running (no
# trap) and writes the exports and PIDs to $KANSOKU_SERVICES_DIR/env; stop them with
#   kill $(cat "$KANSOKU_SERVICES_DIR"/*.pid)

kansoku_services_install() {
    local missing=() sudo=""
    command -v clickhouse-server >/dev/null || missing+=(clickhouse-server)
    command -v clickhouse-client >/dev/null || missing+=(clickhouse-client)
    command -v redis-server >/dev/null || missing+=(redis-server)
    [ "${#missing[@]}" -gt 0 ] || return 0
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
}

# Free loopback TCP ports, one per argument name (bind-to-0; a tiny race is acceptable in CI).
kansoku_services_free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# kansoku_services_config NAME HTTP_PORT TCP_PORT: writes $dir/NAME/{config,users}.xml.
kansoku_services_config() {
    local name=$1 http=$2 tcp=$3 d="$KANSOKU_SERVICES_DIR/$1"
    mkdir -p "$d/data" "$d/tmp" "$d/user_files" "$d/log"
    # Memory kept modest: three servers share a small CI machine.
    cat >"$d/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$d/log/server.log</log>
        <errorlog>$d/log/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$http</http_port>
    <tcp_port>$tcp</tcp_port>
    <path>$d/data/</path>
    <tmp_path>$d/tmp/</tmp_path>
    <user_files_path>$d/user_files/</user_files_path>
    <users_config>$d/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_concurrent_queries>50</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>134217728</uncompressed_cache_size>
    <mlock_executable>false</mlock_executable>
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
    <remote_servers>
        <kansoku_test>
            <shard><replica><host>127.0.0.1</host><port>$KANSOKU_SERVICES_SHARD1_TCP</port></replica></shard>
            <shard><replica><host>127.0.0.1</host><port>$KANSOKU_SERVICES_SHARD2_TCP</port></replica></shard>
        </kansoku_test>
    </remote_servers>
</yandex>
EOF
    cat >"$d/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <max_threads>2</max_threads>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default></default></quotas>
</yandex>
EOF
}

# kansoku_services_start NAME HTTP_PORT: starts the server in the background, records its PID.
kansoku_services_start() {
    local name=$1 http=$2 d="$KANSOKU_SERVICES_DIR/$1"
    # Runs as whoever sources this (root in CI): the data dir belongs to that user, and 18.16
    # does not refuse root.
    clickhouse-server --config-file="$d/config.xml" >"$d/log/stdout.log" 2>&1 &
    echo $! >"$KANSOKU_SERVICES_DIR/$name.pid"
}

# kansoku_services_wait NAME HTTP_PORT: bounded wait for `SELECT 1`; prints the log on failure.
kansoku_services_wait() {
    local name=$1 http=$2 d="$KANSOKU_SERVICES_DIR/$1" i
    for i in $(seq 1 120); do
        if python3 -c 'import sys, urllib.request as u
sys.exit(u.urlopen(sys.argv[1], timeout=2).read() != b"1\n")' \
            "http://127.0.0.1:$http/?query=SELECT%201" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$(cat "$KANSOKU_SERVICES_DIR/$name.pid")" 2>/dev/null; then
            break
        fi
        sleep 0.5
    done
    echo "clickhouse server '$name' did not answer SELECT 1 on port $http; its logs:" >&2
    tail -n 50 "$d/log/stdout.log" "$d/log/server.err.log" "$d/log/server.log" >&2 2>/dev/null || true
    return 1
}

# kansoku_services_redis PORT: starts redis-server on loopback, records its PID, waits for PONG.
kansoku_services_redis() {
    local port=$1 d="$KANSOKU_SERVICES_DIR/redis" i
    mkdir -p "$d"
    # No persistence: the tests own every key they write. --daemonize no keeps $! the server's PID.
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize no \
        --dir "$d" --logfile "$d/server.log" &
    echo $! >"$KANSOKU_SERVICES_DIR/redis.pid"
    for i in $(seq 1 60); do
        if python3 -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"PING\r\n")
sys.exit(s.recv(16) != b"+PONG\r\n")' "$port" 2>/dev/null; then
            return 0
        fi
        kill -0 "$(cat "$KANSOKU_SERVICES_DIR/redis.pid")" 2>/dev/null || break
        sleep 0.25
    done
    echo "redis-server did not answer PING on port $port; its log:" >&2
    tail -n 50 "$d/server.log" >&2 2>/dev/null || true
    return 1
}

kansoku_services_stop() {
    local f pid
    for f in "$KANSOKU_SERVICES_DIR"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || true
    done
    for f in "$KANSOKU_SERVICES_DIR"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$f"
    done
    rm -rf "$KANSOKU_SERVICES_DIR"
}

kansoku_services_main() {
    kansoku_services_install
    KANSOKU_SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kansoku-services.XXXXXX")
    export KANSOKU_SERVICES_DIR
    local ports
    read -r -a ports <<<"$(kansoku_services_free_ports 7)"
    KANSOKU_SERVICES_SHARD1_TCP=${ports[3]}
    KANSOKU_SERVICES_SHARD2_TCP=${ports[5]}
    kansoku_services_config single "${ports[0]}" "${ports[1]}"
    kansoku_services_config shard1 "${ports[2]}" "${ports[3]}"
    kansoku_services_config shard2 "${ports[4]}" "${ports[5]}"
    if [ "${KANSOKU_SERVICES_KEEP:-}" != "1" ]; then
        trap kansoku_services_stop EXIT
    fi
    kansoku_services_start single "${ports[0]}"
    kansoku_services_start shard1 "${ports[2]}"
    kansoku_services_start shard2 "${ports[4]}"
    kansoku_services_redis "${ports[6]}"
    kansoku_services_wait single "${ports[0]}"
    kansoku_services_wait shard1 "${ports[2]}"
    kansoku_services_wait shard2 "${ports[4]}"
    export KANSOKU_TEST_CLICKHOUSE_URL="clickhouse://127.0.0.1:${ports[0]}/default"
    # Three servers share one host, so `nodes` gives each one's HTTP address (see README).
    export KANSOKU_TEST_CLICKHOUSE_CLUSTER_URL="clickhouse://127.0.0.1:${ports[2]}/default?cluster=kansoku_test&nodes=127.0.0.1:${ports[2]},127.0.0.1:${ports[4]}"
    export KANSOKU_TEST_REDIS_URL="redis://127.0.0.1:${ports[6]}/0"
    {
        echo "export KANSOKU_TEST_CLICKHOUSE_URL='$KANSOKU_TEST_CLICKHOUSE_URL'"
        echo "export KANSOKU_TEST_CLICKHOUSE_CLUSTER_URL='$KANSOKU_TEST_CLICKHOUSE_CLUSTER_URL'"
        echo "export KANSOKU_TEST_REDIS_URL='$KANSOKU_TEST_REDIS_URL'"
    } >"$KANSOKU_SERVICES_DIR/env"
    echo "clickhouse: single on :${ports[0]}, shards on :${ports[2]} and :${ports[4]} ($KANSOKU_SERVICES_DIR)"
    echo "redis: on :${ports[6]}"
}

kansoku_services_main
