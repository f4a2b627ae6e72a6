// Package smime verifies HEPiX image lists signed as S/MIME, the form EGI AppDB (vmcaster)
// and vmcatcher use: a multipart/signed document (RFC 1847, RFC 8551) whose first part is the
// list and whose second is a detached PKCS#7 signature by the endorser's X.509 host
// certificate, issued by an IGTF CA.
//
// Verification follows what vmcatcher and `openssl smime -verify -CApath` do, and adds the
// checks HEPiX sites rely on: exactly one signer; a chain to a CA in the site's IGTF
// directory (<hash>.0 certificates); every link checked against its CA's CRL (<hash>.r0, as
// fetch-crl writes it); the signer's subject and issuer, in OpenSSL's one-line form, equal to
// the configured ones. Callers then compare them with the list's hv:dn and hv:ca.
//
// Security-critical (see internal/policy). The PKCS#7 structure is read by
// github.com/smallstep/pkcs7 and certificates by crypto/x509; this package only finds the
// bytes the signature covers in the MIME document, which is why it does not use
// mime/multipart: that reader hands out decoded part bodies, not the exact bytes signed.
package smime

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/textproto"
	"strings"
)

// Limits on untrusted input. The document as a whole is bounded by the subscription's
// max_size when it is fetched.
const (
	// MaxHeaderBytes bounds a header block (the document's and each part's).
	MaxHeaderBytes = 16 << 10
	// MaxSignatureBytes bounds the signature part: a PKCS#7 with a few certificates is a
	// few kilobytes; 1 MiB leaves room for long chains without inviting abuse.
	MaxSignatureBytes = 1 << 20
	// MaxCertificates bounds the certificates a signature may carry.
	MaxCertificates = 16
)

// Message is a parsed multipart/signed document.
type Message struct {
	// Signed is the first part exactly as it appears between the boundaries (the line break
	// before the closing delimiter excluded): what the signature covers, its MIME headers
	// included when it has any.
	Signed []byte
	// Signature is the DER PKCS#7 of the second part, base64-decoded.
	Signature []byte
	// Micalg is the digest the document declares (informational: the PKCS#7 decides).
	Micalg string
}

// Parse splits an S/MIME multipart/signed document into the signed part and the signature.
// It checks the form only; Verify checks the signature.
func Parse(doc []byte) (*Message, error) {
	hdr, body, err := readHeader(doc)
	if err != nil {
		return nil, malformed("document header: %v", err)
	}
	if v := hdr.Get("Mime-Version"); v != "" && strings.TrimSpace(v) != "1.0" {
		return nil, malformed("MIME-Version %q: want 1.0", v)
	}
	mt, params, err := mime.ParseMediaType(hdr.Get("Content-Type"))
	if err != nil {
		return nil, malformed("Content-Type %q: %v", hdr.Get("Content-Type"), err)
	}
	if mt != "multipart/signed" {
		return nil, malformed("Content-Type is %q, not multipart/signed: this is not an S/MIME signed list", mt)
	}
	switch p := strings.ToLower(params["protocol"]); p {
	case "application/x-pkcs7-signature", "application/pkcs7-signature":
	default:
		return nil, malformed("multipart/signed protocol %q: want application/pkcs7-signature", params["protocol"])
	}
	boundary := params["boundary"]
	if boundary == "" || len(boundary) > 70 {
		return nil, malformed("multipart/signed without a valid boundary")
	}
	parts, err := splitParts(body, []byte(boundary))
	if err != nil {
		return nil, malformed("%v", err)
	}
	if len(parts) != 2 {
		return nil, malformed("multipart/signed has %d parts: want the content and one signature", len(parts))
	}
	sig, err := signaturePart(parts[1])
	if err != nil {
		return nil, malformed("signature part: %v", err)
	}
	return &Message{Signed: parts[0], Signature: sig, Micalg: params["micalg"]}, nil
}

// readHeader reads a MIME header block and returns it and what follows the blank line.
func readHeader(data []byte) (textproto.MIMEHeader, []byte, error) {
	end := headerEnd(data)
	if end < 0 {
		return nil, nil, errors.New("no blank line after the header, or a header over 16 KiB")
	}
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(data[:end])))
	h, err := r.ReadMIMEHeader()
	if err != nil {
		return nil, nil, err
	}
	return h, data[end:], nil
}

// headerEnd is the offset just past the blank line that ends a header block (CRLF or LF
// line endings), or -1 when there is none within MaxHeaderBytes.
func headerEnd(data []byte) int {
	limit := min(len(data), MaxHeaderBytes)
	for i := 0; i < limit; i++ {
		if data[i] != '\n' {
			continue
		}
		j := i + 1
		if j < len(data) && data[j] == '\r' {
			j++
		}
		if j < len(data) && data[j] == '\n' {
			return j + 1
		}
	}
	return -1
}

// splitParts returns the bodies of a multipart body (RFC 2046 §5.1.1) byte for byte: each
// part is what lies between the line break that ends a delimiter line and the line break
// that precedes the next delimiter, that line break belonging to the delimiter. Preamble and
// epilogue are ignored. Line breaks may be CRLF or LF: openssl writes the structure with LF.
func splitParts(body, boundary []byte) ([][]byte, error) {
	delim := append([]byte("--"), boundary...)
	var parts [][]byte
	start := -1 // start of the current part, once the first delimiter was seen
	pos := 0
	for {
		i := findDelimiter(body, delim, pos)
		if i < 0 {
			if start < 0 {
				return nil, errors.New("no multipart boundary found")
			}
			return nil, errors.New("multipart document ends without its closing boundary")
		}
		if start >= 0 {
			end := i
			if end > start && body[end-1] == '\n' {
				end--
				if end > start && body[end-1] == '\r' {
					end--
				}
			}
			parts = append(parts, body[start:end])
			if len(parts) > 2 {
				return nil, errors.New("multipart/signed has more than two parts")
			}
		}
		after := i + len(delim)
		if bytes.HasPrefix(body[after:], []byte("--")) {
			if start < 0 {
				return nil, errors.New("multipart document closes before its first part")
			}
			return parts, nil
		}
		// Transport padding, then the line break that ends the delimiter line.
		for after < len(body) && (body[after] == ' ' || body[after] == '\t') {
			after++
		}
		if after < len(body) && body[after] == '\r' {
			after++
		}
		if after >= len(body) || body[after] != '\n' {
			return nil, errors.New("multipart boundary line has trailing text")
		}
		start = after + 1
		pos = start
	}
}

// findDelimiter finds delim at the start of a line at or after pos.
func findDelimiter(body, delim []byte, pos int) int {
	for pos <= len(body) {
		i := bytes.Index(body[pos:], delim)
		if i < 0 {
			return -1
		}
		i += pos
		if i == 0 || body[i-1] == '\n' {
			return i
		}
		pos = i + 1
	}
	return -1
}

// signaturePart decodes the application/pkcs7-signature part.
func signaturePart(part []byte) ([]byte, error) {
	hdr, body, err := readHeader(part)
	if err != nil {
		return nil, err
	}
	mt, _, err := mime.ParseMediaType(hdr.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("Content-Type %q: %w", hdr.Get("Content-Type"), err)
	}
	if mt != "application/x-pkcs7-signature" && mt != "application/pkcs7-signature" {
		return nil, fmt.Errorf("Content-Type %q: want application/pkcs7-signature", mt)
	}
	if cte := strings.ToLower(strings.TrimSpace(hdr.Get("Content-Transfer-Encoding"))); cte != "base64" {
		return nil, fmt.Errorf("Content-Transfer-Encoding %q: want base64", cte)
	}
	if len(body) > 2*MaxSignatureBytes { // base64 is 4/3 of the bytes, plus line breaks
		return nil, fmt.Errorf("signature over %d bytes", MaxSignatureBytes)
	}
	clean := bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, body)
	der := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Decode(der, clean)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	if n == 0 {
		return nil, errors.New("empty signature")
	}
	if n > MaxSignatureBytes {
		return nil, fmt.Errorf("signature over %d bytes", MaxSignatureBytes)
	}
	return der[:n], nil
}

// content returns the list inside the signed entity: the entity itself when it has no MIME
// header (what `openssl smime -sign` writes by default and with -binary), or its body after
// a header of Content-Type text/plain or application/json (what -text writes).
func content(entity []byte) ([]byte, error) {
	trimmed := bytes.TrimLeft(entity, " \t\r\n\ufeff")
	if len(trimmed) == 0 {
		return nil, malformed("the signed part is empty")
	}
	if trimmed[0] == '{' || trimmed[0] == '[' {
		return entity, nil
	}
	hdr, body, err := readHeader(entity)
	if err != nil {
		return nil, malformed("the signed part is neither JSON nor a MIME entity: %v", err)
	}
	mt, _, err := mime.ParseMediaType(hdr.Get("Content-Type"))
	if err != nil || (mt != "text/plain" && mt != "application/json") {
		return nil, malformed("the signed part has Content-Type %q: want text/plain or application/json", hdr.Get("Content-Type"))
	}
	switch cte := strings.ToLower(strings.TrimSpace(hdr.Get("Content-Transfer-Encoding"))); cte {
	case "", "7bit", "8bit", "binary":
	default:
		return nil, malformed("the signed part has Content-Transfer-Encoding %q: vmgate reads only unencoded lists", cte)
	}
	return body, nil
}

// Canonical converts bare LF line endings to CRLF, the canonical form S/MIME signs text in
// (RFC 8551 §3.1.1); openssl smime -sign does this unless given -binary. It returns b itself
// when there is nothing to convert.
func Canonical(b []byte) []byte {
	n := bytes.Count(b, []byte("\n")) - bytes.Count(b, []byte("\r\n"))
	if n == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+n)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
