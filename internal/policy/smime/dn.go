package smime

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"strings"
)

// shortNames are OpenSSL's short names (OBJ_nid2sn) for the attributes that appear in the
// subjects of IGTF host and CA certificates. An attribute not listed here is written as
// its dotted OID, as OpenSSL does for an OID it has no name for.
var shortNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.4":                    "SN",
	"2.5.4.5":                    "serialNumber",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.9":                    "street",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.12":                   "title",
	"2.5.4.17":                   "postalCode",
	"2.5.4.41":                   "name",
	"2.5.4.42":                   "GN",
	"2.5.4.43":                   "initials",
	"2.5.4.44":                   "generationQualifier",
	"2.5.4.46":                   "dnQualifier",
	"2.5.4.65":                   "pseudonym",
	"0.9.2342.19200300.100.1.1":  "UID",
	"0.9.2342.19200300.100.1.25": "DC",
	"1.2.840.113549.1.9.1":       "emailAddress",
}

// OneLine renders a distinguished name the way `openssl x509 -subject -nameopt compat`
// (X509_NAME_oneline) does and the way HEPiX lists write hv:dn and hv:ca:
// "/DC=org/DC=example/CN=host.example.org", in the order of the certificate's RDN sequence
// (not the reversed order of RFC 4514), each attribute of a multi-valued RDN as its own
// "/type=value", bytes outside printable ASCII as \xHH.
func OneLine(name pkix.Name) string {
	var b strings.Builder
	for _, atv := range name.Names {
		writeATV(&b, atv)
	}
	return b.String()
}

// OneLineRaw is OneLine for a DER-encoded Name, such as x509.Certificate.RawSubject; it keeps
// the certificate's order even where pkix.Name would have to guess.
func OneLineRaw(der []byte) (string, error) {
	var seq pkix.RDNSequence
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return "", fmt.Errorf("distinguished name: %w", err)
	}
	if len(rest) != 0 {
		return "", fmt.Errorf("distinguished name: %d bytes after the name", len(rest))
	}
	var b strings.Builder
	for _, rdn := range seq {
		for _, atv := range rdn {
			writeATV(&b, atv)
		}
	}
	return b.String(), nil
}

func writeATV(b *strings.Builder, atv pkix.AttributeTypeAndValue) {
	key := atv.Type.String()
	if sn, ok := shortNames[key]; ok {
		key = sn
	}
	b.WriteByte('/')
	b.WriteString(key)
	b.WriteByte('=')
	var v string
	switch x := atv.Value.(type) {
	case string:
		v = x
	case []byte:
		v = string(x)
	default:
		v = fmt.Sprint(x)
	}
	// X509_NAME_oneline escapes every byte outside ' '..'~'; the string types Go decodes
	// (UTF8String, PrintableString, IA5String, T61String) keep their bytes, so a UTF-8
	// name comes out as OpenSSL prints it.
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < ' ' || c > '~' {
			fmt.Fprintf(b, `\x%02X`, c)
			continue
		}
		b.WriteByte(c)
	}
}
