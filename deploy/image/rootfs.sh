#!/usr/bin/env bash
# Assembles the root filesystem of the kelemetry image into DIR: the binary (stripped), the shared libraries it
# loads (glibc, libgcc_s: what `ldd` names), a passwd/group with the non-root user 65532 ("nonroot"), the CA
# bundle, and the folders the pod mounts over (/tmp, /var/lib/kelemetry). Nothing else: no shell, no package
# manager. Run inside the Containerfile's build stage, or on a Debian machine by scripts/image/build.
#
# Usage: deploy/image/rootfs.sh BINARY DIR
set -euo pipefail
binary="${1:?usage: rootfs.sh BINARY DIR}"
root="${2:?usage: rootfs.sh BINARY DIR}"
[[ -x "$binary" ]] || { echo "rootfs.sh: $binary is not an executable" >&2; exit 1; }
[[ ! -e "$root" || -z "$(ls -A "$root")" ]] || { echo "rootfs.sh: $root exists and is not empty" >&2; exit 1; }

mkdir -p "$root"/{usr/local/bin,etc/ssl/certs,tmp,var/lib/kelemetry}
chmod 1777 "$root/tmp"
install -m 0755 "$binary" "$root/usr/local/bin/kelemetry"
strip --strip-debug "$root/usr/local/bin/kelemetry"

# The loader and every library `ldd` resolves, at the paths the binary asks for (symlinks followed).
ldd "$binary" | awk '/=> \// { print $3 } /^\t\// { print $1 }' | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
# Files first, then DNS (glibc's default without this file is the same; written for clarity).
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
chown -R 65532:65532 "$root/var/lib/kelemetry" 2>/dev/null || true
