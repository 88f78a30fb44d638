#!/bin/sh
# Unpacks, without installing, the peers the DBus tests run from
# /var/cache/netevd-tests (tests/common/peers.rs):
# - systemd-resolved of the installed systemd's version (installing it
#   takes over the machine's resolv.conf);
# - NetworkManager (installing it pulls udev and starts it on the
#   machine), with its libraries installed.
# As root on Debian, with apt lists present. Idempotent.
set -eu
export DEBIAN_FRONTEND=noninteractive
cache=/var/cache/netevd-tests
mkdir -p "$cache"
if [ ! -x "$cache/resolved-root/lib/systemd/systemd-resolved" ]; then
  v=$(dpkg-query -W -f='${Version}' systemd)
  d=$(mktemp -d)
  (cd "$d" && chmod 777 . && apt-get download -q "systemd-resolved=$v")
  dpkg-deb -x "$d"/systemd-resolved_*.deb "$cache/resolved-root"
  rm -rf "$d"
fi
apt-get install -y --no-install-recommends libbluetooth3 libmm-glib0 libndp0 \
  libnewt0.52 libnm0 libteamdctl0
if [ ! -x "$cache/nm-root/usr/sbin/NetworkManager" ]; then
  d=$(mktemp -d)
  (cd "$d" && chmod 777 . && apt-get download -q network-manager)
  dpkg-deb -x "$d"/network-manager_*.deb "$cache/nm-root"
  rm -rf "$d"
fi
