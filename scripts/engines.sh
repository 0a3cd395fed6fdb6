#!/usr/bin/env bash
# Start (idempotently, on loopback) every engine the test suite needs and wait until each is ready.
# Engines this machine kind does not start by itself are installed from Debian's packages.
set -euo pipefail

log() { echo "engines: $*"; }

apt_install() {
    if ! command -v "$1" >/dev/null 2>&1; then
        log "installing $2 from Debian's packages"
        if [ ! -f /tmp/.meshkit-apt-updated ]; then apt-get update -qq && touch /tmp/.meshkit-apt-updated; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    fi
}

wait_for() {  # wait_for NAME SECONDS COMMAND...
    local name=$1 seconds=$2
    shift 2
    for _ in $(seq 1 $((seconds * 10))); do
        if "$@" >/dev/null 2>&1; then log "$name is ready"; return 0; fi
        sleep 0.1
    done
    log "$name did not become ready in ${seconds}s"; return 1
}

# etcd (CP registry backend): 127.0.0.1:2379, data in /tmp so each machine starts clean.
apt_install etcd etcd-server
apt_install etcdctl etcd-client
if ! etcdctl --endpoints=http://127.0.0.1:2379 endpoint health >/dev/null 2>&1; then
    log "starting etcd on 127.0.0.1:2379"
    mkdir -p /tmp/meshkit-etcd
    nohup etcd --name meshkit-ci --data-dir /tmp/meshkit-etcd \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster meshkit-ci=http://127.0.0.1:2380 >/tmp/meshkit-etcd.log 2>&1 &
fi
wait_for etcd 30 etcdctl --endpoints=http://127.0.0.1:2379 endpoint health

# ZooKeeper (CP registry backend): 127.0.0.1:2181, from Debian's zookeeper package (needs java).
apt_install java default-jre-headless
if [ ! -x /usr/share/zookeeper/bin/zkServer.sh ]; then
    log "installing zookeeper from Debian's packages"
    if [ ! -f /tmp/.meshkit-apt-updated ]; then apt-get update -qq && touch /tmp/.meshkit-apt-updated; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper >/dev/null
fi
zk_up() { (exec 3<>/dev/tcp/127.0.0.1/2181 && printf 'srvr' >&3 && grep -q Mode <&3) 2>/dev/null; }
if ! zk_up; then
    log "starting ZooKeeper on 127.0.0.1:2181"
    mkdir -p /tmp/meshkit-zk/conf /tmp/meshkit-zk/data
    cat >/tmp/meshkit-zk/conf/zoo.cfg <<CFG
tickTime=1000
dataDir=/tmp/meshkit-zk/data
clientPort=2181
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok
maxSessionTimeout=60000
CFG
    cp /etc/zookeeper/conf/log4j.properties /tmp/meshkit-zk/conf/ 2>/dev/null || true
    ZOOCFGDIR=/tmp/meshkit-zk/conf ZOO_LOG_DIR=/tmp/meshkit-zk nohup /usr/share/zookeeper/bin/zkServer.sh \
        start-foreground /tmp/meshkit-zk/conf/zoo.cfg >/tmp/meshkit-zk/zk.log 2>&1 &
fi
wait_for zookeeper 60 zk_up

# Redis (distributed rate limits): preinstalled and running on this machine kind; start it if not.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    apt_install redis-server redis-server
    log "starting Redis on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /tmp --logfile /tmp/meshkit-redis.log
fi
wait_for redis 20 redis-cli -h 127.0.0.1 -p 6379 ping

# Prometheus (metrics tests scrape real services): 127.0.0.1:19090, scraping every second whatever
# targets the tests write as JSON files into /tmp/meshkit-prometheus/targets (file service discovery).
apt_install prometheus prometheus
prom_up() { (exec 3<>/dev/tcp/127.0.0.1/19090 && printf 'GET /-/ready HTTP/1.0\r\n\r\n' >&3 && grep -q " 200 " <&3) 2>/dev/null; }
if ! prom_up; then
    log "starting Prometheus on 127.0.0.1:19090"
    mkdir -p /tmp/meshkit-prometheus/targets /tmp/meshkit-prometheus/data
    cat >/tmp/meshkit-prometheus/prometheus.yml <<CFG
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: meshkit
    file_sd_configs:
      - files: ["/tmp/meshkit-prometheus/targets/*.json"]
        refresh_interval: 1s
CFG
    nohup prometheus --config.file=/tmp/meshkit-prometheus/prometheus.yml \
        --storage.tsdb.path=/tmp/meshkit-prometheus/data --web.listen-address=127.0.0.1:19090 \
        >/tmp/meshkit-prometheus/prometheus.log 2>&1 &
fi
wait_for prometheus 30 prom_up

# Chromium (the gateway's /docs is rendered in a real browser by Playwright): Debian's, never a
# browser build Playwright would download.
apt_install chromium chromium

# The engines this machine kind starts before a session (PostgreSQL, MariaDB, RabbitMQ, NATS; Redis
# above): started again, with the machine's own commands, if one has stopped since. A crashed
# MariaDB is reported with the end of its error log, so the reason shows in CI's output.
tcp_up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    log "PostgreSQL is down: starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
wait_for postgresql 30 pg_isready -q -h 127.0.0.1 -p 5432
if ! mariadb-admin -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; then
    log "MariaDB is down: the end of /var/log/mysql/error.log:"
    tail -n 30 /var/log/mysql/error.log 2>/dev/null | sed 's/^/engines:   /' || true
    log "starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
wait_for mariadb 60 mariadb-admin -h 127.0.0.1 -P 3306 -u root ping
if ! tcp_up 5672; then
    log "RabbitMQ is down: starting it"
    rabbitmq-server -detached || true
fi
wait_for rabbitmq 90 tcp_up 5672
if ! tcp_up 4222; then
    log "NATS is down: starting it"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
fi
wait_for nats 30 tcp_up 4222
