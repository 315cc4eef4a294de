#!/usr/bin/env bash
# Adds a broker user (a bed, or the station) to Mosquitto's password file with a new random password,
# and writes that password to a file (mode 0600) to copy to the bed (forward.mqtt.password_file) or to
# the station (--password-file). A bed's user name is its device_id: the ACL lets it publish only under
# edge-sdk/<its name>/. Running it again for a name replaces that user's password.
#
#   sudo ./add-user.sh /etc/mosquitto/edge-sdk/passwd bed-12 ./bed-12.password
#   sudo systemctl reload mosquitto     # Mosquitto re-reads the password file and ACL on SIGHUP
#
# The password is never put on a command line (mosquitto_passwd -U hashes a private temporary file).
set -euo pipefail

usage() { echo "usage: $0 PASSWORD_FILE NAME [OUT_FILE]" >&2; exit 2; }
[[ $# -ge 2 && $# -le 3 ]] || usage
passwd_file=$1
name=$2
out=${3:-./$name.password}
if [[ ! $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ]]; then
    echo "error: NAME '$name': expected 1-64 letters, digits, '_', '.' or '-' (a pseudonymous bed name)" >&2
    exit 2
fi
command -v mosquitto_passwd >/dev/null || { echo "error: mosquitto_passwd is missing: apt-get install mosquitto" >&2; exit 2; }

umask 077
password=$(openssl rand -base64 24)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%s:%s\n' "$name" "$password" >"$work/entry"
mosquitto_passwd -U "$work/entry"
touch "$passwd_file"
awk -F: -v name="$name" '$1 != name' "$passwd_file" >"$work/passwd"
cat "$work/entry" >>"$work/passwd"
cat "$work/passwd" >"$passwd_file"
printf '%s\n' "$password" >"$out"
chmod 0600 "$out"
echo "user $name set in $passwd_file; its password is in $out (copy it to the device, then delete it here)"
