#!/usr/bin/env bash
# make run: an agent on ROOT with the demo desired state from fixtures/.
# The demo bundle is signed with fixtures/keys/bundle.key, a key for demos
# and tests only, whose public half is put in ROOT/trust/.
set -euo pipefail
bin=${1:-bin/warden}
root=${2:-.warden}
mkdir -p "$root/trust" "$root/inbox"
chmod 0755 "$root"
chmod 0600 fixtures/keys/bundle.key  # git does not keep the mode
install -m 0600 fixtures/keys/bundle.pub "$root/trust/demo.pub"
version=$(date +%s)
"$bin" bundle build --in fixtures/desired --key fixtures/keys/bundle.key --version "$version" \
  --out "$root/inbox/demo-$version.tar.gz.part"
mv "$root/inbox/demo-$version.tar.gz.part" "$root/inbox/demo-$version.tar.gz"
echo "demo bundle version $version queued in $root/inbox; starting the agent (Ctrl-C stops it)" >&2
exec "$bin" --root "$root" agent
