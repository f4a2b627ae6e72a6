package smime

//go:generate go run gen_names.go /usr/include/openssl/obj_mac.h

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// oidName is an object's names in OpenSSL's table: the short name (OBJ_nid2sn, the long
// one for objects without a short name, such as organizationIdentifier) and the long name.
type oidName struct{ short, long string }

// OneLine renders a distinguished name the way `openssl x509 -subject -nameopt compat`
// (X509_NAME_oneline) does and the way HEPiX lists write hv:dn and hv:ca:
// "/DC=org/DC=example/CN=host.example.org", in the order of the certificate's RDN sequence
// (not the reversed order of RFC 4514), the attributes of a multi-valued RDN joined by "+",
// the type as OpenSSL's short name or, for an OID OpenSSL has no name for, dotted, bytes
// outside printable ASCII as \xHH, "/" and "+" in values as "\/" and "\+": what OpenSSL
// 3.0 prints. Prefer OneLineRaw: a pkix.Name has lost
// the string types, so a BMPString or UniversalString value cannot come out as OpenSSL
// prints it.
func OneLine(name pkix.Name) string {
	var b strings.Builder
	for _, atv := range name.Names { // pkix.Name has flattened multi-valued RDNs
		var v string
		switch x := atv.Value.(type) {
		case string:
			v = x
		case []byte:
			v = string(x)
		default:
			v = fmt.Sprint(x)
		}
		writeATV(&b, atv.Type, []byte(v), asn1.TagUTF8String, '/')
	}
	return b.String()
}

// rdnSep is what X509_NAME_oneline writes before the i-th attribute of an RDN: '/' before
// the first, '+' between the attributes of a multi-valued RDN (OpenSSL 3.0).
func rdnSep(i int) byte {
	if i == 0 {
		return '/'
	}
	return '+'
}

// rawATV is an AttributeTypeAndValue with its value's encoding kept.
type rawATV struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

// rawRDNSET is a RelativeDistinguishedName (the SET suffix makes encoding/asn1 read a SET).
type rawRDNSET []rawATV

// OneLineRaw is OneLine for a DER-encoded Name, such as x509.Certificate.RawSubject: it
// keeps the certificate's order and the value bytes as encoded, which is what OpenSSL
// prints.
func OneLineRaw(der []byte) (string, error) {
	var seq []rawRDNSET
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return "", fmt.Errorf("distinguished name: %w", err)
	}
	if len(rest) != 0 {
		return "", fmt.Errorf("distinguished name: %d bytes after the name", len(rest))
	}
	var b strings.Builder
	for _, rdn := range seq {
		for i, atv := range rdn {
			v, tag := atv.Value.Bytes, atv.Value.Tag
			if atv.Value.Class != asn1.ClassUniversal || atv.Value.IsCompound {
				// Not a string: OpenSSL keeps such a value's whole encoding.
				v, tag = atv.Value.FullBytes, -1
			}
			writeATV(&b, atv.Type, v, tag, rdnSep(i))
		}
	}
	return b.String(), nil
}

func writeATV(b *strings.Builder, typ asn1.ObjectIdentifier, v []byte, tag int, sep byte) {
	key := typ.String()
	if n, ok := openSSLNames[key]; ok {
		key = n.short
	}
	b.WriteByte(sep)
	b.WriteString(key)
	b.WriteByte('=')
	if tag == asn1.TagBitString && len(v) > 0 {
		v = v[1:] // the count of unused bits is not part of OpenSSL's ASN1_STRING data
	}
	// X509_NAME_oneline prints the value's bytes as encoded, escaping every byte outside
	// ' '..'~' (so UTF-8 comes out as \xC3\xA9, a BMPString with \x00 between ASCII
	// letters) and, since OpenSSL 3.0, the separators '/' and '+' with a backslash.
	for _, c := range v {
		switch {
		case c < ' ' || c > '~':
			fmt.Fprintf(b, `\x%02X`, c)
		case c == '/' || c == '+':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
}

// NamedOIDs returns the OIDs OneLine names as OpenSSL does (its object table, generated
// from OpenSSL 3.0's obj_mac.h), so that a test can compare every one with openssl.
func NamedOIDs() []asn1.ObjectIdentifier {
	oids := make([]asn1.ObjectIdentifier, 0, len(openSSLNames))
	for s := range openSSLNames {
		var oid asn1.ObjectIdentifier
		for a := range strings.SplitSeq(s, ".") {
			n, err := strconv.Atoi(a)
			if err != nil {
				panic("smime: bad OID in the generated table: " + s)
			}
			oid = append(oid, n)
		}
		oids = append(oids, oid)
	}
	slices.SortFunc(oids, func(a, b asn1.ObjectIdentifier) int { return strings.Compare(a.String(), b.String()) })
	return oids
}
