#!/usr/bin/env bash
# Builds edgerec's Debian package from an already built binary, with dpkg-deb alone (no
# cargo-deb to compile): /usr/bin/edgerec, the systemd unit, the sysusers/tmpfiles snippets
# (user edgerec, /var/lib/edgerec), /etc/edgerec/edgerec.toml as a conffile, the board
# presets under /usr/share/edgerec/boards, and the maintainer scripts in packaging/deb/.
#
#   scripts/deb.sh ARCH [BINARY] [OUT_DIR]
#
# ARCH is a Debian architecture (arm64, armhf, amd64). BINARY defaults to the release
# cross build for ARCH (make build-aarch64 / build-armv7); OUT_DIR to target/deb. Prints the
# path of the .deb it wrote. DEB_COMPRESS=none|gzip|xz (default xz) picks the compression.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

arch=${1:?usage: scripts/deb.sh ARCH [BINARY] [OUT_DIR]}
case "$arch" in
  arm64) triple=aarch64-unknown-linux-gnu ;;
  armhf) triple=armv7-unknown-linux-gnueabihf ;;
  amd64) triple=x86_64-unknown-linux-gnu ;;
  *) echo "deb: unknown architecture $arch (arm64, armhf, amd64)" >&2; exit 2 ;;
esac
target_dir=${CARGO_TARGET_DIR:-target}
binary=${2:-$target_dir/$triple/release/edgerec}
out=${3:-$target_dir/deb}
[ -x "$binary" ] || { echo "deb: no binary at $binary (run make build-aarch64 / build-armv7)" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
[ -n "$version" ] || { echo "deb: no version in Cargo.toml" >&2; exit 1; }

stage=$(mktemp -d "${TMPDIR:-/tmp}/edgerec-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root

install -D -m 0755 "$binary" "$root/usr/bin/edgerec"
install -D -m 0644 systemd/edgerec.service "$root/usr/lib/systemd/system/edgerec.service"
install -D -m 0644 systemd/edgerec-sysusers.conf "$root/usr/lib/sysusers.d/edgerec.conf"
install -D -m 0644 systemd/edgerec-tmpfiles.conf "$root/usr/lib/tmpfiles.d/edgerec.conf"
install -D -m 0644 packaging/edgerec.toml "$root/etc/edgerec/edgerec.toml"
for board in boards/*/; do
  name=$(basename "$board")
  install -D -m 0644 "$board/edgerec.toml" "$root/usr/share/edgerec/boards/$name/edgerec.toml"
  install -D -m 0644 "$board/README.md" "$root/usr/share/edgerec/boards/$name/README.md"
  if [ -d "$board/edgerec.service.d" ]; then
    for f in "$board"/edgerec.service.d/*.conf; do
      install -D -m 0644 "$f" "$root/usr/share/edgerec/boards/$name/edgerec.service.d/$(basename "$f")"
    done
  fi
done
install -D -m 0644 README.md "$root/usr/share/doc/edgerec/README.md"
install -D -m 0644 packaging/deb/copyright "$root/usr/share/doc/edgerec/copyright"
gzip -9n -c CHANGELOG.md > "$stage/changelog.gz"
install -D -m 0644 "$stage/changelog.gz" "$root/usr/share/doc/edgerec/changelog.gz"

mkdir -p "$root/DEBIAN"
size_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE_KB@/$size_kb/" \
  packaging/deb/control.in > "$root/DEBIAN/control"
echo /etc/edgerec/edgerec.toml > "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do
  install -m 0755 "packaging/deb/$s" "$root/DEBIAN/$s"
done

mkdir -p "$out"
deb="$out/edgerec_${version}_${arch}.deb"
# Deterministic: owned by root, files dated by the last commit when there is one.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
dpkg-deb --root-owner-group "-Z${DEB_COMPRESS:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
