#!/usr/bin/env bash
# Makes a development CA and a webhook serving certificate signed by it, for running the
# webhook with certificate files (instead of a SPIRE-minted certificate).
#
# usage: certs/make-dev-certs.sh OUTDIR [DNS...]
#
# Writes OUTDIR/ca.crt, ca.key (the CA: put base64 of ca.crt into caBundle),
# tls.crt (serving certificate followed by the CA certificate), tls.key (PKCS#8).
# SANs: localhost, 127.0.0.1, ::1, spire-controller-manager-webhook-service.spire-system.svc
# and every DNS name given. An existing CA in OUTDIR is reused, so re-running rotates only
# the serving certificate (the caBundle stays valid). Validity: CA 10 years, leaf 30 days
# (DEV_CERT_DAYS overrides).
set -euo pipefail

die() { printf 'make-dev-certs: %s\n' "$*" >&2; exit 1; }
[[ $# -ge 1 ]] || die "usage: $0 OUTDIR [DNS...]"
command -v openssl >/dev/null || die "openssl not found"

out="$1"; shift
days="${DEV_CERT_DAYS:-30}"
mkdir -p "$out"
umask 077

if [[ ! -s "$out/ca.key" || ! -s "$out/ca.crt" ]]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$out/ca.key" -out "$out/ca.crt" -days 3650 \
		-subj "/CN=spire-controller-manager webhook dev CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

sans="DNS:localhost,IP:127.0.0.1,IP:::1,DNS:spire-controller-manager-webhook-service.spire-system.svc"
for dns in "$@"; do
	if [[ "$dns" =~ ^[0-9.]+$ || "$dns" == *:* ]]; then
		sans+=",IP:$dns"
	else
		sans+=",DNS:$dns"
	fi
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/ext.cnf" <<CNF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$sans
CNF
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$tmp/tls.key" -out "$tmp/tls.csr" -subj "/CN=spire-controller-manager-webhook" 2>/dev/null
openssl x509 -req -in "$tmp/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
	-days "$days" -extfile "$tmp/ext.cnf" -out "$tmp/leaf.crt" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$tmp/tls.key" -out "$tmp/tls.pk8"
cat "$tmp/leaf.crt" "$out/ca.crt" >"$tmp/tls.crt"
# Key first, then certificate: a reader polling both files sees a mismatched pair at worst
# for one poll, and refuses it (the webhook only swaps in pairs that belong together).
mv "$tmp/tls.pk8" "$out/tls.key"
mv "$tmp/tls.crt" "$out/tls.crt"
rm -f "$out/ca.srl"
printf 'make-dev-certs: wrote %s/{ca.crt,ca.key,tls.crt,tls.key} (SANs %s)\n' "$out" "$sans" >&2
