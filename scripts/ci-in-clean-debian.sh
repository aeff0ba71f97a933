#!/usr/bin/env bash
# Proof that CI passes on a bare machine (not run by CI): builds a clean Debian 12 (bookworm) root
# with debootstrap, copies in ONLY the Rust toolchain (rustup home, cargo's bin dir) and
# cargo-nextest, clones this repository's HEAD into it (like CI's fresh clone), and runs
# `CI=true bash .ci/run` inside it under chroot, in private network, mount and PID namespaces:
#  - the network namespace has its own loopback, so the host's PostgreSQL (5432) and Redis (6379)
#    are out of reach and scripts/services.sh must install and start its own;
#  - it reaches the package registries through slirp4netns (user-mode NAT, no change to the
#    host's interfaces, routes or firewall; --disable-host-loopback: no way back to the host's
#    127.0.0.1);
#  - mounts (/proc, /sys, /dev) live only in the private mount namespace, and every process
#    (PostgreSQL, Redis, the server) dies with the PID namespace.
#
# Usage (as root): scripts/ci-in-clean-debian.sh [options]
#   --services-only   run only scripts/services.sh (twice) and a psql/redis-cli check in the root
#   --keep            keep the root (and its work folder) afterwards
#   --root DIR        build the root in DIR (default: a new folder under /var/tmp); an existing
#                     Debian root there is reused as it is (debootstrap and copies skipped)
#   --copy-registry   also copy ~/.cargo/registry (crates already downloaded) into the root;
#                     by default cargo fetches every crate from crates.io
#   --no-overlay      use HEAD exactly; by default uncommitted changes to scripts/, .ci/ and
#                     docs/ci.md in this working tree are copied over the clone
#   --nice N          niceness of the run inside the root (default 10)
# Logs and a timing summary: target/clean-debian/ in this working tree.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
mode=full
keep=0
root_arg=
copy_registry=0
overlay=1
nice_n=10
while [ $# -gt 0 ]; do
  case $1 in
    --services-only) mode=services ;;
    --keep) keep=1 ;;
    --root) root_arg=$2; shift ;;
    --copy-registry) copy_registry=1 ;;
    --no-overlay) overlay=0 ;;
    --nice) nice_n=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (debootstrap, chroot, namespaces)" >&2; exit 1; }

logs=$repo/target/clean-debian
mkdir -p "$logs"
exec > >(tee "$logs/proof.log") 2>&1
if [ -n "$root_arg" ]; then
  work=$(mkdir -p "$root_arg" && cd "$root_arg" && pwd)
  root=$work
else
  work=$(mktemp -d /var/tmp/autorisen-clean-debian.XXXXXX)
  root=$work/root
fi
echo "proof: root $root, logs $logs, mode $mode"

# ---------------------------------------------------------------- timing and clean-up
phases=()
phase() { # phase NAME COMMAND...: runs and times one phase
  local name=$1 t0=$SECONDS rc=0
  shift
  echo "== proof: $name"
  "$@" || rc=$?
  phases+=("$(printf '%6ss  %-40s %s' $((SECONDS - t0)) "$name" "$([ $rc -eq 0 ] && echo ok || echo "FAILED ($rc)")")")
  return $rc
}
summary() {
  echo
  echo "== proof: summary ($mode)"
  printf '%s\n' "${phases[@]}" | tee "$logs/summary.txt"
  printf '%6ss  total\n' $((SECONDS - t_start)) | tee -a "$logs/summary.txt"
  if [ -f "$logs/run.log" ]; then
    grep -E '^ *Summary \[|^test result:|passed, [0-9]+ failed|^ *[0-9]+s  |^root: .ci/run took' "$logs/run.log" |
      tee -a "$logs/summary.txt" || true
  fi
}
ns_pid=
slirp_pid=
cleanup() {
  local rc=$?
  [ -z "$slirp_pid" ] || kill "$slirp_pid" 2>/dev/null || true
  [ -z "$ns_pid" ] || kill -KILL "$ns_pid" 2>/dev/null || true
  summary || true
  # The mounts were made in a private mount namespace; nothing should be left in ours.
  if findmnt -rn -o TARGET | grep -q "^$root/"; then
    echo "proof: unmounting what is left under $root"
    findmnt -rn -o TARGET | grep "^$root/" | sort -r | while read -r m; do umount -l "$m" || true; done
  fi
  if [ "$keep" -eq 1 ] || [ -n "$root_arg" ]; then
    echo "proof: kept $root"
  elif [ -d "$work" ]; then
    echo "proof: removing $work"
    rm -rf --one-file-system "$work"
  fi
  exit $rc
}
t_start=$SECONDS
trap cleanup EXIT

# ---------------------------------------------------------------- phases
host_tools() {
  local need=()
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v slirp4netns >/dev/null || need+=(slirp4netns)
  command -v unshare >/dev/null && command -v nsenter >/dev/null || need+=(util-linux)
  command -v ip >/dev/null || need+=(iproute2)
  [ ${#need[@]} -eq 0 ] && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >"$logs/host-apt.log" 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${need[@]}" >>"$logs/host-apt.log" 2>&1; }
}

# The Debian mirror this machine is configured with (the only one reachable).
apt_uri() { # apt_uri debian|debian-security
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -E '^(deb |URIs:)' | grep -oE "https?://[^ ]+/$1/?( |\$)" | tr -d ' ' | head -1
}

make_root() {
  if [ -f "$root/etc/debian_version" ]; then
    echo "proof: reusing the Debian root in $root ($(cat "$root/etc/debian_version"))"
    return 0
  fi
  local mirror security
  mirror=$(apt_uri debian)
  security=$(apt_uri debian-security)
  [ -n "$mirror" ] || { echo "no Debian mirror in /etc/apt/sources.list*" >&2; return 1; }
  echo "proof: debootstrap bookworm from $mirror"
  debootstrap --arch=amd64 bookworm "$root" "$mirror" >"$logs/debootstrap.log" 2>&1 ||
    { tail -20 "$logs/debootstrap.log"; return 1; }
  # The sources a stock bookworm has: the release, its updates and security.
  rm -f "$root/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$mirror"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$security" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' "$security"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$root/etc/apt/sources.list.d/debian.sources"
  # slirp4netns answers DNS on 10.0.2.3.
  echo 'nameserver 10.0.2.3' >"$root/etc/resolv.conf"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  echo clean-debian >"$root/etc/hostname"
  rm -rf "$root"/var/lib/apt/lists/* # a bare machine has no package lists yet
}

# This workplace reaches the registries through a TLS proxy with its own CA, which every machine
# of it trusts (/usr/local/share/ca-certificates, and variables such as PIP_CERT pointing at the
# system bundle). A bare machine here has them too: copy the CA (picked up when the root installs
# ca-certificates) and pass those variables. Nothing else from the host's environment is passed.
workplace_ca() {
  mkdir -p "$root/usr/local/share/ca-certificates"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp -a /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    echo "proof: local CA certificates: $(cd /usr/local/share/ca-certificates && echo *.crt)"
  fi
}
ca_env=()
for v in SSL_CERT_FILE SSL_CERT_DIR PIP_CERT REQUESTS_CA_BUNDLE CURL_CA_BUNDLE; do
  [ -z "${!v:-}" ] || ca_env+=("$v=${!v}")
done

copy_toolchain() {
  local rustup_home=${RUSTUP_HOME:-$HOME/.rustup} cargo_home=${CARGO_HOME:-$HOME/.cargo}
  local sysroot tc cargo_bin nextest
  if [ -x "$root/root/.cargo/bin/cargo" ]; then
    echo "proof: toolchain already in the root"
    return 0
  fi
  sysroot=$(rustc --print sysroot)
  tc=$(basename "$sysroot")
  cargo_bin=$(dirname "$(command -v cargo)")
  nextest=$(command -v cargo-nextest || true)
  echo "proof: copying the toolchain $tc from $rustup_home, $cargo_bin${nextest:+ and $nextest}"
  mkdir -p "$root/root/.rustup/toolchains" "$root/root/.cargo"
  cp -a "$rustup_home/settings.toml" "$root/root/.rustup/"
  cp -a "$sysroot" "$root/root/.rustup/toolchains/"
  # Aliases of the same toolchain (e.g. 1.95.0 -> stable).
  for l in "$rustup_home"/toolchains/*; do
    if [ -L "$l" ] && [ "$(readlink -f "$l")" = "$(readlink -f "$sysroot")" ]; then
      ln -s "/root/.rustup/toolchains/$tc" "$root/root/.rustup/toolchains/$(basename "$l")"
    fi
  done
  cp -a "$cargo_bin" "$root/root/.cargo/bin"
  [ ! -f "$cargo_home/env" ] || cp -a "$cargo_home/env" "$root/root/.cargo/"
  if [ -n "$nextest" ]; then
    mkdir -p "$root$(dirname "$nextest")"
    cp -a "$nextest" "$root$nextest"
  fi
  if [ "$copy_registry" -eq 1 ] && [ -d "$cargo_home/registry" ]; then
    echo "proof: copying the crates.io cache $cargo_home/registry ($(du -sh "$cargo_home/registry" | cut -f1))"
    cp -a "$cargo_home/registry" "$root/root/.cargo/"
  fi
  du -sh "$root/root/.rustup" "$root/root/.cargo" | sed 's/^/proof: /'
}

clone_repo() {
  local dest=$root/root/autorisen f
  rm -rf "$dest"
  git clone --quiet "$repo" "$dest"
  echo "proof: cloned $(git -C "$dest" log -1 --format='%h %s' | cut -c1-90)"
  if [ "$overlay" -eq 1 ]; then
    # This work (scripts/, .ci/, docs/ci.md) may not be committed yet: copy it over the clone.
    git -C "$repo" status --porcelain --untracked-files=all -- scripts .ci docs/ci.md |
      while read -r st f; do
        [ -f "$repo/$f" ] || continue
        mkdir -p "$(dirname "$dest/$f")"
        cp -a "$repo/$f" "$dest/$f"
        echo "proof: overlaid from the working tree ($st): $f"
      done
  fi
}

# in_root COMMAND: runs COMMAND (bash) in the root, in its own net/mount/PID namespaces.
in_root() {
  local cmd=$1 ready=$work.net-ready hostns
  rm -f "$ready"
  hostns=$(readlink /proc/self/ns/net)
  # shellcheck disable=SC2016
  unshare --net --mount --pid --fork --kill-child --propagation private -- bash -c '
    root=$1 ready=$2 nice_n=$3 cmd=$4
    shift 4
    for _ in $(seq 1 300); do [ -e "$ready" ] && break; sleep 0.1; done
    [ -e "$ready" ] || { echo "proof: network not ready" >&2; exit 1; }
    mount -t proc proc "$root/proc"
    mount -t sysfs -o ro sysfs "$root/sys"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs -o mode=1777,size=4g tmpfs "$root/dev/shm"
    nice -n "$nice_n" chroot "$root" /usr/bin/env -i HOME=/root USER=root LOGNAME=root \
      SHELL=/bin/bash LANG=C.UTF-8 TERM=dumb CI=true RUST_BACKTRACE=1 \
      PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@" \
      bash -c "$cmd" </dev/null
  ' inner "$root" "$ready" "$nice_n" "$cmd" "${ca_env[@]}" > >(tee "$logs/run.log") 2>&1 &
  ns_pid=$!
  for _ in $(seq 1 50); do
    [ "$(readlink "/proc/$ns_pid/ns/net" 2>/dev/null)" != "$hostns" ] && break
    sleep 0.1
  done
  if [ "$(readlink "/proc/$ns_pid/ns/net" 2>/dev/null)" = "$hostns" ]; then
    echo "proof: no private network namespace" >&2
    return 1
  fi
  slirp4netns --configure --mtu=65520 --disable-host-loopback "$ns_pid" tap0 >"$logs/slirp4netns.log" 2>&1 &
  slirp_pid=$!
  for _ in $(seq 1 100); do
    nsenter --net="/proc/$ns_pid/ns/net" ip -4 -br addr show tap0 2>/dev/null | grep -q 10.0.2.100 && break
    sleep 0.1
  done
  if ! nsenter --net="/proc/$ns_pid/ns/net" ip -4 -br addr show tap0 2>/dev/null | grep -q 10.0.2.100; then
    echo "proof: slirp4netns did not set up tap0 (see $logs/slirp4netns.log)" >&2
    return 1
  fi
  nsenter --net="/proc/$ns_pid/ns/net" ip link set lo up
  echo "proof: namespace network: $(nsenter --net="/proc/$ns_pid/ns/net" ip -br addr | tr -s ' ' | paste -sd ';')"
  touch "$ready"
  local rc=0
  wait "$ns_pid" || rc=$?
  ns_pid=
  kill "$slirp_pid" 2>/dev/null || true
  wait "$slirp_pid" 2>/dev/null || true
  slirp_pid=
  rm -f "$ready"
  return $rc
}

# What every run checks first, inside the root: a bare machine, out of reach of the host's servers.
# shellcheck disable=SC2016
preflight='
set -euo pipefail
cd /root/autorisen
echo "root: $(. /etc/os-release; echo "$PRETTY_NAME"), $(nproc) cores"
for p in 5432 6379; do
  if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
    echo "root: 127.0.0.1:$p is open before services.sh: not isolated" >&2; exit 1
  fi
done
echo "root: nothing listens on 127.0.0.1:5432 or :6379 (the host'"'"'s servers are out of reach)"
for c in psql pg_ctlcluster redis-server redis-cli chromium curl python3 cc; do
  if command -v $c >/dev/null; then echo "root: $c is already installed"; fi
done
echo "root: installed packages: $(dpkg -l | grep -c ^ii); cargo: $(cargo --version); nextest: $(cargo nextest --version 2>/dev/null | head -1)"
'
services_cmd=$preflight'
t0=$SECONDS; bash scripts/services.sh; echo "root: services.sh (first) took $((SECONDS - t0))s"
t0=$SECONDS; bash scripts/services.sh; echo "root: services.sh (again) took $((SECONDS - t0))s"
set -a; . target/services.env; set +a
echo "root: TEST_DATABASE_URL=${TEST_DATABASE_URL%%:*}://…@${TEST_DATABASE_URL#*@}  TEST_REDIS_URL=$TEST_REDIS_URL"
psql -X -w "$TEST_DATABASE_URL" -Atc "SELECT version()"
psql -X -w -q "$TEST_DATABASE_URL" -c "CREATE DATABASE autorisen_t_proof" -c "DROP DATABASE autorisen_t_proof"
echo "root: CREATE/DROP DATABASE works as $(psql -X -w "$TEST_DATABASE_URL" -Atc "SELECT current_user")"
echo "root: redis PING -> $(redis-cli -u "$TEST_REDIS_URL" ping)"
'
full_cmd=$preflight'
# CPU time too: on a machine shared with other builds, wall time alone says little.
TIMEFORMAT="root: .ci/run took %0Rs wall, %0Us user + %0Ss system CPU"
time CI=true bash .ci/run
'

phase "host tools (debootstrap, slirp4netns)" host_tools
phase "debootstrap bookworm" make_root
phase "the workplace's TLS CA" workplace_ca
phase "copy the Rust toolchain" copy_toolchain
phase "clone the repository" clone_repo
if [ "$mode" = services ]; then
  phase "services.sh in the root (isolated)" in_root "$services_cmd"
else
  phase "CI=true bash .ci/run in the root (isolated)" in_root "$full_cmd"
fi
