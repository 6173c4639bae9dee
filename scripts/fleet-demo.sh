#!/usr/bin/env bash
# A fleet of imgfs nodes on one machine (README, "Many hosts"): mounts of one source directory
# (three by default), each served by its own nginx on a loopback port with contrib/nginx-imgfs.conf,
# and one front nginx with contrib/fleet/front.conf that shards the variants over them by
# consistent hashing, retries a dead node's variants on the others, and caches. Prints the
# front's URL and runs until Ctrl-C (or SIGTERM), which stops everything and unmounts.
#
# Needs root (FUSE mounts; the nginx servers run as root here, so the mounts need no
# allow_other) and /dev/fuse. tests/it/fleet.rs drives it with its flags.
#
#   scripts/fleet-demo.sh [OPTIONS] [SOURCE]
#
# SOURCE: the directory every node mounts (default: DIR/photos, sample photos made here).
#   --bin PATH              the imgfs binary (default: scripts/setup-debian.sh installs what
#                           is missing, then cargo build --release)
#   --dir DIR               mountpoints, configs, logs, pid files (default /tmp/imgfs-fleet):
#                           DIR/nodeK/{mnt,imgfs.pid,nginx.pid,error.log,access.log},
#                           DIR/front/{access.log,error.log,cache}
#   --front-port P          the front's port (default 8080)
#   --node-ports A,B,...    one port per node, which sets how many (default 8081,8082,8083)
#   --metrics-ports X,Y,... each node's private metrics server (default 9181,9182,9183)
#   --no-front-cache        the front caches nothing (every request reaches a node)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

BIN='' DIR=/tmp/imgfs-fleet SRC='' FRONT_CACHE=1
FRONT_PORT=8080 NODE_PORTS=8081,8082,8083 METRICS_PORTS=9181,9182,9183
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --front-port) FRONT_PORT=$2; shift 2 ;;
    --node-ports) NODE_PORTS=$2; shift 2 ;;
    --metrics-ports) METRICS_PORTS=$2; shift 2 ;;
    --no-front-cache) FRONT_CACHE=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fleet-demo: unknown option $1 (--help)" >&2; exit 2 ;;
    *) SRC=$1; shift ;;
  esac
done
IFS=, read -r -a nodes <<<"$NODE_PORTS"
IFS=, read -r -a metrics <<<"$METRICS_PORTS"
if [ "${#nodes[@]}" -ne "${#metrics[@]}" ]; then
  echo "fleet-demo: one metrics port per node port" >&2
  exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "fleet-demo: needs root (FUSE mounts and /dev/fuse)" >&2
  exit 1
fi
if [ -z "$BIN" ]; then
  "$ROOT/scripts/setup-debian.sh"
  (cd "$ROOT" && cargo build --release)
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/imgfs
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

if [ -z "$SRC" ]; then
  SRC=$DIR/photos
  mkdir -p "$SRC"
  # Three photo-like JPEGs of different sizes, made locally.
  for spec in a:1600x1067:orange-teal b:1200x1600:red-blue c:2400x1600:green-navy; do
    IFS=: read -r name size colours <<<"$spec"
    [ -f "$SRC/$name.jpg" ] ||
      /usr/bin/convert -size "$size" "plasma:$colours" -seed 7 -quality 90 "$SRC/$name.jpg"
  done
fi
SRC=$(cd "$SRC" && pwd)

pids=()
mounts=()
mounted() { grep -qs " $1 " /proc/mounts; }

stop() {
  trap - EXIT INT TERM
  # The front first, then each node's nginx, then the mounts (SIGTERM unmounts cleanly).
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait || true
  # A node killed with SIGKILL leaves a dead mount ("Transport endpoint is not connected").
  local mnt
  for mnt in "${mounts[@]}"; do
    if mounted "$mnt"; then umount -l "$mnt" || true; fi
  done
}
trap stop EXIT
trap 'exit 0' INT TERM

# Waits up to 10 s for a command to succeed.
await() {
  local what=$1
  shift
  for _ in $(seq 200); do
    if "$@"; then return 0; fi
    sleep 0.05
  done
  echo "fleet-demo: $what did not come up" >&2
  exit 1
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# An nginx in the foreground with its own prefix: one process (master_process off), so a
# node is two pids, its nginx and its imgfs, which is what the test kills.
start_nginx() {
  local prefix=$1 server=$2
  mkdir -p "$prefix"
  cat >"$prefix/nginx.conf" <<EOT
daemon off;
master_process off;
error_log $prefix/error.log;
pid $prefix/nginx.pid;
events { worker_connections 1024; }
http {
  include /etc/nginx/mime.types;
  access_log $prefix/access.log;
  client_body_temp_path $prefix/body;
  proxy_temp_path $prefix/proxy;
  fastcgi_temp_path $prefix/fastcgi;
  uwsgi_temp_path $prefix/uwsgi;
  scgi_temp_path $prefix/scgi;
  keepalive_timeout 75s;
$server
}
EOT
  /usr/sbin/nginx -c "$prefix/nginx.conf" -p "$prefix" &
  pids+=($!)
}

upstreams=''
for i in "${!nodes[@]}"; do
  node=$DIR/node$((i + 1)) port=${nodes[i]} metrics_port=${metrics[i]}
  mkdir -p "$node/mnt"
  if mounted "$node/mnt"; then umount -l "$node/mnt"; fi
  "$BIN" mount --errors web --disk-cache "$node/cache" "$SRC" "$node/mnt" 2>"$node/imgfs.log" &
  pids+=($!)
  mounts+=("$node/mnt")
  echo "$!" >"$node/imgfs.pid"
  await "the mount at $node/mnt" mounted "$node/mnt"
  server=$(sed -e "s|listen 8080;|listen 127.0.0.1:$port;|" \
    -e "s|listen 127.0.0.1:9180;|listen 127.0.0.1:$metrics_port;|" \
    -e "s|/mnt/img|$node/mnt|g" "$ROOT/contrib/nginx-imgfs.conf")
  start_nginx "$node" "$server"
  await "node $((i + 1))'s nginx on port $port" listening "$port"
  upstreams+="127.0.0.1:$port "
done

# The front: the shipped config with the nodes' addresses and this run's paths.
front=$(awk -v nodes="$upstreams" '
  /^ *server 10\.0\.0\.[0-9]+:8080/ {
    if (!done) {
      n = split(nodes, addr, " ")
      for (i = 1; i <= n; i++) { line = $0; sub(/10\.0\.0\.[0-9]+:8080/, addr[i], line); print line }
      done = 1
    }
    next
  }
  { print }' "$ROOT/contrib/fleet/front.conf" |
  sed -e "s|listen 80;|listen 127.0.0.1:$FRONT_PORT;|" \
    -e "s|/var/cache/nginx/imgfs|$DIR/front/cache|" \
    -e "s|/var/log/nginx/imgfs-front.log|$DIR/front/access.log|")
if [ "$FRONT_CACHE" = 0 ]; then front=${front/proxy_cache imgfs;/proxy_cache off;}; fi
if grep -q -e '10\.0\.0\.' -e '/var/' <<<"$front" ||
  { [ "$FRONT_CACHE" = 0 ] && ! grep -q 'proxy_cache off;' <<<"$front"; }; then
  echo "fleet-demo: contrib/fleet/front.conf changed; update this script" >&2
  exit 1
fi
start_nginx "$DIR/front" "$front"
await "the front on port $FRONT_PORT" listening "$FRONT_PORT"

first=$(cd "$SRC" && find . -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) |
  sed 's|^\./||' | sort | head -n 1)
cat <<EOT
imgfs fleet: ${#nodes[@]} nodes mounting $SRC, front http://127.0.0.1:$FRONT_PORT/
  curl -sI 'http://127.0.0.1:$FRONT_PORT/${first:-photo.jpg}@resize,w_900@format,webp'
  tail -f $DIR/front/access.log     (upstream= says which node answered)
  curl -s http://127.0.0.1:${metrics[0]}/metrics | grep conversions_total   (node 1; Ctrl-C stops all)
fleet ready: http://127.0.0.1:$FRONT_PORT/
EOT
wait
