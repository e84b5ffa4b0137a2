#!/usr/bin/env bash
# Throwaway TLS material for the SMTP sink: a tiny CA and a leaf certificate for
# localhost (SAN DNS:localhost, IP:127.0.0.1) signed by it, both ECDSA P-256.
#
#   cert.sh DIR   writes DIR/ca.pem (the trust anchor for the client under test),
#                 DIR/cert.pem and DIR/key.pem (the sink's certificate and key).
#
# A separate CA is needed because webpki refuses a CA certificate as end-entity.
set -euo pipefail

dir="${1:?usage: cert.sh DIR}"
mkdir -p "$dir"
cd "$dir"

openssl ecparam -name prime256v1 -genkey -noout -out ca-key.pem
openssl req -x509 -new -key ca-key.pem -sha256 -days 30 \
  -subj "/CN=Confab test CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" \
  -out ca.pem

openssl ecparam -name prime256v1 -genkey -noout -out key.pem
openssl req -new -key key.pem -subj "/CN=localhost" -out leaf.csr
cat > leaf.ext <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
  -sha256 -days 30 -extfile leaf.ext -out cert.pem

rm -f leaf.csr leaf.ext ca.srl
