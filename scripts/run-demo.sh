#!/usr/bin/env bash
# make run: an agent on ROOT with the demo desired state from fixtures/.
# The demo bundle is signed with fixtures/keys/bundle.key, a key for demos
# and tests only, whose public half is put in ROOT/trust/.
set -euo pipefail
bin=${1:-bin/warden}
root=${2:-.warden}
mkdir -p "$root/trust" "$root/inbox"
# The modes of the permission model (docs/drift.md), so that a fresh demo
# starts with no drift: `warden drift` lists only what you tamper with.
chmod 0755 "$root"
chmod 0700 "$root/trust"
if [ -d "$root/Plugins" ]; then
  find "$root/Plugins" -type d -exec chmod 0750 {} +
  find "$root/Plugins" -type f -perm /111 -exec chmod 0750 {} +
fi
chmod 0600 fixtures/keys/bundle.key  # git does not keep the mode
install -m 0600 fixtures/keys/bundle.pub "$root/trust/demo.pub"
# The demo Plugin document pins the SHA-256 of the heartbeat program that
# `make run` built into ROOT/Plugins/heartbeat/heartbeat: a copy of the
# desired state gets that hash (no hash and no signature: never started).
desired=fixtures/desired
exe="$root/Plugins/heartbeat/heartbeat"
if [ -x "$exe" ]; then
  desired=$(mktemp -d)
  cp -R fixtures/desired/. "$desired"
  sum=$(sha256sum "$exe" | cut -d' ' -f1)
  sed -i -e '/"sha256"/d' -e "/\"executable\"/a\\    \"sha256\": \"$sum\"," "$desired/plugins/heartbeat.json"
  echo "heartbeat plugin: $exe, sha256 $sum" >&2
else
  echo "no $exe (make run builds it): the heartbeat plugin will fail validation" >&2
fi
version=$(date +%s)
"$bin" bundle build --in "$desired" --key fixtures/keys/bundle.key --version "$version" \
  --out "$root/inbox/demo-$version.tar.gz.part"
if [ "$desired" != fixtures/desired ]; then rm -rf "$desired"; fi
mv "$root/inbox/demo-$version.tar.gz.part" "$root/inbox/demo-$version.tar.gz"
echo "demo bundle version $version queued in $root/inbox; starting the agent (Ctrl-C stops it)" >&2
exec "$bin" --root "$root" agent
