#!/bin/sh
# The same side-by-side exec measurement as bench/appcontrol, with
# fapolicyd (Debian's package) deciding instead of warden: 20 rules that
# match nothing, then allow everything. fapolicyd marks every mount of the
# filesystem types in watch_fs, so the script confines it to ramfs, and
# refuses to run when a ramfs other than its own is mounted: it mounts one
# ramfs ("on", watched) and one tmpfs ("off", not watched), and first times
# both with nothing watching, since they are different filesystems.
# /etc/fapolicyd is restored on exit.
#
#	sudo bench/appcontrol/fapolicyd.sh [EXECS]
#
# Where fapolicyd cannot drop to its own user ("Cannot change to uid": a
# capability bounding set without CAP_MAC_OVERRIDE, as in some VMs and
# containers), FAPOLICYD_UID=root FAPOLICYD_GID=root keeps it root.
set -eu
execs=${1:-1000}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
command -v fapolicyd >/dev/null || { echo "fapolicyd is not installed (apt-get install fapolicyd)" >&2; exit 1; }
if grep -q ' ramfs ' /proc/mounts; then
	echo "a ramfs is mounted already: fapolicyd would watch it too; not running" >&2
	exit 1
fi
here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/wdn-appctl-fapolicyd.XXXXXX)
cp -a /etc/fapolicyd "$work/etc-backup"
mkdir "$work/on" "$work/off"
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	umount "$work/on" 2>/dev/null || true
	umount "$work/off" 2>/dev/null || true
	rm -rf /etc/fapolicyd && cp -a "$work/etc-backup" /etc/fapolicyd
	rm -rf "$work"
}
trap cleanup EXIT INT TERM
mount -t ramfs -o mode=0755 wdn-appctl-fapd "$work/on"
mount -t tmpfs -o size=16m,mode=0755 wdn-appctl-fapd "$work/off"
cp /usr/bin/true "$work/on/true"
cp /usr/bin/true "$work/off/true"
go build -o "$work/bench" "$here/bench/appcontrol"

echo "nothing watching (ramfs against tmpfs):"
"$work/bench" -execs "$execs" -plain "$work/on/true,$work/off/true"

sed -i -e 's/^watch_fs = .*/watch_fs = ramfs/' -e 's/^trust = .*/trust = file/' \
	-e 's/^integrity = .*/integrity = none/' -e 's/^permissive = .*/permissive = 0/' \
	-e "s/^uid = .*/uid = ${FAPOLICYD_UID:-fapolicyd}/" -e "s/^gid = .*/gid = ${FAPOLICYD_GID:-fapolicyd}/" /etc/fapolicyd/fapolicyd.conf
rm -f /etc/fapolicyd/rules.d/*
i=0
while [ $i -lt 20 ]; do
	echo "deny_audit perm=execute uid=$((60000 + i)) : path=/opt/vendor-$i/bin/tool" >>/etc/fapolicyd/rules.d/10-bench.rules
	i=$((i + 1))
done
echo "allow perm=any all : all" >>/etc/fapolicyd/rules.d/90-allow.rules
cat /etc/fapolicyd/rules.d/10-bench.rules /etc/fapolicyd/rules.d/90-allow.rules >/etc/fapolicyd/compiled.rules
fapolicyd --debug-deny >"$work/fapolicyd.log" 2>&1 &
pid=$!
n=0
until grep -q "Starting to listen for events" "$work/fapolicyd.log"; do
	n=$((n + 1))
	if [ $n -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
		echo "fapolicyd did not start:" >&2
		cat "$work/fapolicyd.log" >&2
		exit 1
	fi
	sleep 0.1
done
echo "fapolicyd $(fapolicyd --version 2>/dev/null | head -1 || true) watching the ramfs:"
"$work/bench" -execs "$execs" -plain "$work/on/true,$work/off/true"
