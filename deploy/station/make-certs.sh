#!/usr/bin/env bash
# A private CA for the ward and a server certificate for the station host (the broker's TLS, and the
# ward page's own HTTPS when it listens beyond loopback). Keys never leave this host; copy only ca.pem
# to the beds (their forward.mqtt.ca_file).
#
#   sudo ./make-certs.sh /etc/mosquitto/edge-sdk station.local [10.0.0.5 ...]
#
# Existing files are kept (run it again to add a missing server certificate, never to replace the CA).
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR HOSTNAME [IP ...]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
out=$1
host=$2
shift 2
days=${EDGE_SDK_CERT_DAYS:-825}
umask 077
mkdir -p "$out"

san="DNS:$host,DNS:localhost,IP:127.0.0.1"  # the station on this host connects to mqtts://localhost
for ip in "$@"; do
    san="$san,IP:$ip"
done

if [[ ! -f "$out/ca.key" ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=edge-sdk ward CA" -keyout "$out/ca.key" -out "$out/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign"
    echo "made the ward CA: $out/ca.pem (copy it to every bed; keep ca.key on this host only)"
fi

if [[ ! -f "$out/server.pem" ]]; then
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$host" \
        -keyout "$out/server.key" -out "$out/server.csr"
    extensions=$(mktemp)
    trap 'rm -f "$extensions"' EXIT
    printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" >"$extensions"
    openssl x509 -req -in "$out/server.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" -CAcreateserial \
        -days "$days" -extfile "$extensions" -out "$out/server.pem"
    rm -f "$out/server.csr"
    echo "made the server certificate for $san: $out/server.pem"
fi
chmod 0644 "$out/ca.pem" "$out/server.pem"
