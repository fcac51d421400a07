#!/usr/bin/env bash
# Checks the Debian package end to end, as root: lintian (no errors), the
# unit (systemd-analyze verify), install with dpkg, start the installed
# binary with the packaged defaults (/etc/default/warden), `warden doctor`,
# stop, remove and purge. Used by CI (.ci/run) and `make deb-check`.
set -euo pipefail
deb=${1:?usage: deb-check.sh PACKAGE.deb}
[ "$(id -u)" = 0 ] || { echo "deb-check: run as root (dpkg -i)" >&2; exit 2; }

step() { echo "deb-check: $*"; }

step "lintian"
lintian --fail-on error --suppress-tags shared-library-lacks-prerequisites,unknown-field "$deb" 2>&1 | grep -v 'running with root privileges' || true
lintian --fail-on error "$deb" >/dev/null 2>&1 || { echo "deb-check: lintian reports errors" >&2; exit 1; }

step "dpkg -i"
if dpkg-query -W -f='${Status}' warden 2>/dev/null | grep -q 'install ok installed'; then
  echo "deb-check: warden is already installed here; not touching it" >&2
  exit 1
fi
dpkg -i "$deb" >/dev/null
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  dpkg -P warden >/dev/null 2>&1 || true
  [ -n "${created_root:-}" ] && rm -rf "$created_root"
}
trap cleanup EXIT
# shellcheck disable=SC1091
set -a; . /etc/default/warden; set +a
root=${WARDEN_ROOT:-/opt/warden}
[ -z "$(ls -A "$root/KeeperStorage" 2>/dev/null)" ] && created_root=$root

for f in /usr/bin/warden /usr/lib/warden/warden /usr/lib/warden/warden-core /usr/lib/systemd/system/warden.service /etc/default/warden \
         /usr/share/man/man1/warden.1.gz /usr/share/man/man1/warden-doctor.1.gz \
         /usr/share/bash-completion/completions/warden /usr/share/zsh/vendor-completions/_warden \
         /usr/share/fish/vendor_completions.d/warden.fish /usr/share/doc/warden/copyright; do
  [ -e "$f" ] || { echo "deb-check: $f not installed" >&2; exit 1; }
done
dpkg-query -W -f='${Conffiles}\n' warden | grep -q /etc/default/warden || { echo "deb-check: /etc/default/warden is not a conffile" >&2; exit 1; }
[ "$(stat -c '%a %U' "$root")" = "755 root" ] || { echo "deb-check: $root is $(stat -c '%a %U' "$root"); want 755 root" >&2; exit 1; }
[ "$(stat -c '%a' "$root/KeeperStorage")" = 700 ] || { echo "deb-check: $root/KeeperStorage not 0700" >&2; exit 1; }

if command -v systemd-analyze >/dev/null; then
  step "systemd-analyze verify"
  out=$(systemd-analyze verify /usr/lib/systemd/system/warden.service 2>&1 || true)
  echo "$out" | grep -i warden.service && { echo "deb-check: the unit has problems" >&2; exit 1; }
  step "systemd-analyze security (exposure)"
  systemd-analyze security --offline=true /usr/lib/systemd/system/warden.service 2>/dev/null | tail -1 || true
fi

step "start the installed agent with the packaged defaults"
listen=()
# The packaged ports, unless something here already uses them (a developer machine).
if (exec 3<>/dev/tcp/127.0.0.1/6889) 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/6888) 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/8675) 2>/dev/null; then
  listen=(--listen-api 127.0.0.1:0 --listen-health 127.0.0.1:0 --listen-mqtt 127.0.0.1:0)
fi
# shellcheck disable=SC2086
/usr/bin/warden agent $WARDEN_AGENT_ARGS "${listen[@]}" 2>/dev/null &
pid=$!
for _ in $(seq 100); do
  [ -s "$root/run/agent.json" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "deb-check: the agent exited" >&2; exit 1; }
  sleep 0.1
done
[ -s "$root/run/agent.json" ] || { echo "deb-check: the agent did not serve within 10 s" >&2; exit 1; }
/usr/bin/warden version

step "warden doctor (agent up)"
/usr/bin/warden doctor
step "warden elevate through the installed front, as nobody (no policy: refused, exit 1)"
set +e
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/warden --root "$root" elevate -- /usr/bin/true 2>&1); code=$?
set -e
[ "$code" = 1 ] && grep -q "denied" <<<"$out" || { echo "deb-check: elevate as nobody: exit $code: $out" >&2; exit 1; }
step "warden doctor (agent down)"
kill "$pid"; wait "$pid" || true; pid=
/usr/bin/warden doctor -o json >/dev/null

step "dpkg -r, dpkg -P"
dpkg -r warden >/dev/null
[ ! -e /usr/bin/warden ] && [ ! -e /usr/lib/warden/warden-core ] || { echo "deb-check: warden left after remove" >&2; exit 1; }
dpkg -P warden >/dev/null
step "ok"
