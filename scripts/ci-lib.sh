# Sourced by scripts/services.sh, scripts/test.sh and scripts/e2e.sh (not run on its own).
# ci_apt_install WHY PKG...: installs Debian packages that a bare machine lacks, without prompts.
# `apt-get update` runs at most once per 6 hours per checkout (stamp in target/ci/), and again
# only if an install fails on stale package lists.

ci_repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ci_apt_stamp="$ci_repo_dir/target/ci/apt-updated"
ci_apt_log="$ci_repo_dir/target/ci/apt.log"

ci_apt_get() {
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "ci: root is needed to install Debian packages (apt-get $*); install them and run again" >&2
      return 1
    fi
  fi
  # LC_ALL: the cluster that installing `postgresql` creates gets UTF-8 even where LANG is unset.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
    apt-get -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold "$@"
}

ci_apt_update() {
  mkdir -p "$(dirname "$ci_apt_stamp")"
  echo "ci: apt-get update"
  ci_apt_get update -qq >>"$ci_apt_log" 2>&1 || { tail -20 "$ci_apt_log" >&2; return 1; }
  touch "$ci_apt_stamp"
}

ci_apt_install() {
  local why=$1
  shift
  mkdir -p "$(dirname "$ci_apt_log")"
  echo "ci: installing $* from Debian ($why)"
  if [ -z "$(find "$ci_apt_stamp" -mmin -360 2>/dev/null)" ]; then
    ci_apt_update
  fi
  if ! ci_apt_get install -y -qq --no-install-recommends "$@" >>"$ci_apt_log" 2>&1; then
    # Stale lists (a removed version, a 404): refresh once and try again.
    ci_apt_update
    ci_apt_get install -y -qq --no-install-recommends "$@" >>"$ci_apt_log" 2>&1 ||
      { tail -30 "$ci_apt_log" >&2; echo "ci: could not install $*" >&2; return 1; }
  fi
}
