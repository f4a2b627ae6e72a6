#!/usr/bin/env bash
# Regenerates the fixtures in this directory with the openssl CLI: an IGTF-style CA
# directory (<hash>.0, <hash>.r0), an endorser host certificate, a revoked one, and a list
# signed with `openssl smime -sign` in its three modes. Validity is long so that the unit
# tests, which verify at a fixed time, keep passing.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf work certificates ./*.smime ./*.subject
mkdir -p work certificates
cat > work/ca.cnf <<'CNF'
[ca]
default_ca = igtf
[igtf]
dir = work
database = work/index.txt
new_certs_dir = work
serial = work/serial
crlnumber = work/crlnumber
default_md = sha256
default_crl_days = 36500
policy = any
preserve = yes
copy_extensions = none
[any]
domainComponent = optional
organizationName = optional
organizationalUnitName = optional
commonName = supplied
[host]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
CNF
: > work/index.txt
echo 1000 > work/serial
echo 1000 > work/crlnumber
openssl req -x509 -newkey rsa:2048 -nodes -keyout work/ca.key -out work/ca.pem -days 36500 \
	-subj "/DC=org/DC=example/CN=Example Test CA" 2>/dev/null
for h in endorser revoked; do
	openssl req -newkey rsa:2048 -nodes -keyout work/$h.key -out work/$h.csr \
		-subj "/DC=org/DC=example/O=Hosts/CN=$h.example.org" 2>/dev/null
	openssl ca -batch -config work/ca.cnf -name igtf -extensions host -cert work/ca.pem -keyfile work/ca.key \
		-days 36500 -in work/$h.csr -out work/$h.pem 2>/dev/null
done
openssl ca -config work/ca.cnf -name igtf -cert work/ca.pem -keyfile work/ca.key -revoke work/revoked.pem 2>/dev/null
openssl ca -config work/ca.cnf -name igtf -cert work/ca.pem -keyfile work/ca.key -gencrl -out work/ca.crl 2>/dev/null
hash=$(openssl x509 -hash -noout -in work/ca.pem)
cp work/ca.pem certificates/$hash.0
cp work/ca.crl certificates/$hash.r0
openssl x509 -noout -subject -nameopt compat -in work/endorser.pem > endorser.subject
openssl x509 -noout -issuer -nameopt compat -in work/endorser.pem >> endorser.subject
for mode in default binary text; do
	flags=()
	[ $mode = binary ] && flags=(-binary)
	[ $mode = text ] && flags=(-text)
	openssl smime -sign "${flags[@]}" -in list.json -signer work/endorser.pem -inkey work/endorser.key -out $mode.smime
done
openssl smime -sign -in list.json -signer work/revoked.pem -inkey work/revoked.key -out revoked.smime
# A list that names another endorser than the certificate that signs it.
sed 's|CN=endorser.example.org|CN=other.example.org|' list.json > work/other.json
openssl smime -sign -in work/other.json -signer work/endorser.pem -inkey work/endorser.key -out names-other.smime
rm -rf work
# v1.crl and v1-ca.pem: a v1 CRL (no crlnumber, no crl_extensions) revoking serial 1000,
# made with `openssl ca -gencrl` from a configuration without crlnumber; crypto/x509 alone
# refuses it. Not regenerated here: TestParseV1CRL pins its content.
