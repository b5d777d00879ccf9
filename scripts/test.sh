#!/usr/bin/env bash
# Install everything the test suite needs, then run all of it.
#
# System packages (util-linux logger, Net-SNMP tools, snmptrapd, redis-server,
# rsyslog and its TLS driver rsyslog-gnutls, curl, iproute2, nftables, nats-server) come
# from apt when run as root and missing;
# Python packages go into .venv. The tests start their own servers on loopback,
# or (tests/ha/test_netns.py, as root) in network namespaces they create.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v logger >/dev/null || need+=(bsdutils)
command -v snmptrap >/dev/null || need+=(snmp)
command -v snmptrapd >/dev/null || need+=(snmptrapd)
command -v redis-server >/dev/null || need+=(redis-server)
command -v rsyslogd >/dev/null || need+=(rsyslog)
compgen -G '/usr/lib/*/rsyslog/lmnsd_gtls.so' >/dev/null || need+=(rsyslog-gnutls)
command -v curl >/dev/null || need+=(curl)
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v nats-server >/dev/null || need+=(nats-server)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "test.sh: missing system packages (run as root to install): ${need[*]}" >&2
    fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

.venv/bin/python -m ruff check formats dedup gateway bench tests
.venv/bin/python -m mypy
# pytest exits 5 when it collected no test: that is a failure here too.
if [ $# -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
# The sinks' 30 s outage tests mostly wait: they run beside the rest, in a second pytest with ports
# of its own; its output follows the main run's.
beside_log=$(mktemp)
TG_TEST_PORTS=15000-19999 .venv/bin/python -m pytest -m outage -p no:cacheprovider >"$beside_log" 2>&1 &
beside=$!
set +e
.venv/bin/python -m pytest -m "not outage"
main=$?
# The receivers and their clients again on the pure-Python path (TRAPGATE_PURE: no compiled module).
if [ "$main" -eq 0 ]; then
    echo "--- the receivers on the pure-Python path ---"
    TRAPGATE_PURE=1 .venv/bin/python -m pytest -p no:cacheprovider tests/unit/test_udp_batch.py \
        tests/unit/test_syslog.py tests/unit/test_syslog_fast.py \
        tests/integration/test_syslog_clients.py tests/integration/test_snmp_clients.py \
        tests/integration/test_custom_http.py
    main=$?
fi
wait "$beside"
other=$?
set -e
echo "--- the sinks' outage tests (run beside the rest) ---"
cat "$beside_log"
rm -f "$beside_log"
[ "$main" -eq 0 ] && [ "$other" -eq 0 ]
