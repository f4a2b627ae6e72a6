// Package smime verifies HEPiX image lists signed as S/MIME, the form EGI AppDB (vmcaster)
// and vmcatcher use: a multipart/signed document (RFC 1847, RFC 8551) whose first part is the
// list and whose second is a detached PKCS#7 signature by the endorser's X.509 host
// certificate, issued by an IGTF CA; or an opaque application/pkcs7-mime signed-data that
// carries the list inside (openssl smime -sign -nodetach).
//
// Verification follows what vmcatcher and `openssl smime -verify -CApath -crl_check_all` do,
// and adds the checks HEPiX sites rely on: no SHA-1 or MD5; exactly one signer; a chain to a
// self-signed CA in the site's IGTF directory (<hash>.0 certificates); every certificate of
// it checked against its issuer's CRL (<hash>.r0, as fetch-crl writes it); the signer's
// subject and issuer, in OpenSSL's one-line form, equal to the configured ones. Callers then
// compare them with the list's hv:dn and hv:ca.
//
// Security-critical (see internal/policy). The PKCS#7 structure is read by
// github.com/smallstep/pkcs7 and certificates by crypto/x509; this package only finds the
// bytes the signature covers in the MIME document, which is why it does not use
// mime/multipart: that reader hands out decoded part bodies, not the exact bytes signed.
// Header fields are read with net/textproto and mime, as RFC 2045 and RFC 5322 write them.
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

// Message is a parsed S/MIME signed document.
type Message struct {
	// Signed is the first part exactly as it appears between the boundaries (the line break
	// before the closing delimiter excluded): what the signature covers, its MIME headers
	// included when it has any. Empty for an opaque signature, whose content is inside it.
	Signed []byte
	// Signature is the DER PKCS#7 of the second part, base64-decoded (or of the whole body
	// of an opaque application/pkcs7-mime document).
	Signature []byte
	// Micalg is the digest the document declares (informational: the PKCS#7 decides).
	Micalg string
	// Opaque reports an application/pkcs7-mime signed-data document (openssl smime -sign
	// -nodetach): the list is the content the PKCS#7 carries.
	Opaque bool
}

var bom = []byte("\ufeff")

// Parse splits an S/MIME document into the signed part and the signature: multipart/signed
// (a detached signature, what vmcaster and openssl smime -sign write) or an opaque
// application/pkcs7-mime signed-data (-nodetach). It checks the form only; Verify checks
// the signature.
func Parse(doc []byte) (*Message, error) {
	// An editor may put a byte order mark before the header; the header is not signed.
	doc = bytes.TrimPrefix(doc, bom)
	if what := sniff(doc); what != "" {
		return nil, malformed("%s", what)
	}
	hdr, body, err := readHeader(doc)
	if err != nil {
		return nil, malformed("document header: %v", err)
	}
	// RFC 2045 §4: "1.(produced by MetaSend Vx.x)0" is 1.0 too.
	if v, ok := hdr["Mime-Version"]; ok && strings.Join(strings.Fields(structured(v[0])), "") != "1.0" {
		return nil, malformed("MIME-Version %q: want 1.0", v[0])
	}
	mt, params, err := mediaType(hdr)
	if err != nil {
		return nil, malformed("Content-Type: %v", err)
	}
	switch mt {
	case "multipart/signed":
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		return parseOpaque(hdr, params, body)
	case "application/pkcs7-signature", "application/x-pkcs7-signature":
		return nil, malformed("Content-Type is %s: this is a detached signature alone, without the list it signs; give the S/MIME document (multipart/signed) that holds both", mt)
	default:
		return nil, malformed("Content-Type is %q, not multipart/signed: this is not an S/MIME signed list; check url", mt)
	}
	switch p := strings.ToLower(params["protocol"]); p {
	case "application/x-pkcs7-signature", "application/pkcs7-signature":
	default:
		return nil, malformed("multipart/signed protocol %q: want application/pkcs7-signature (this is not an S/MIME signature)", params["protocol"])
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
	return &Message{Signed: parts[0], Signature: sig, Micalg: strings.ToLower(params["micalg"])}, nil
}

// parseOpaque reads an application/pkcs7-mime document: its body is the base64 PKCS#7,
// which must be signed data (not an encrypted message).
func parseOpaque(hdr textproto.MIMEHeader, params map[string]string, body []byte) (*Message, error) {
	switch st := strings.ToLower(params["smime-type"]); st {
	case "", "signed-data":
	case "enveloped-data", "authenveloped-data":
		return nil, malformed("this is an encrypted S/MIME message (smime-type %s), not a signed list: ask the endorser for the list signed only (openssl smime -sign)", st)
	default:
		return nil, malformed("application/pkcs7-mime of smime-type %q: want signed-data", st)
	}
	sig, err := decodeBase64Body(hdr, body)
	if err != nil {
		return nil, malformed("opaque signed list: %v", err)
	}
	return &Message{Signature: sig, Opaque: true}, nil
}

// sniff names what a document that cannot be S/MIME is, from its first bytes, so that the
// refusal says what was served rather than how the header failed to parse.
func sniff(doc []byte) string {
	t := bytes.TrimLeft(doc, " \t\r\n")
	switch {
	case len(t) == 0:
		return "the document is empty: check url"
	case t[0] == '{' || t[0] == '[':
		return "this is a JSON document, not an S/MIME signed list: the URL serves an unsigned list; subscribe to the signed one (AppDB: .../image.list), or use cosign_keys if the endorser signs with cosign"
	case t[0] == '<':
		return "this is an HTML or XML page, not an S/MIME signed list (a login, error or index page?): check url and token"
	case bytes.HasPrefix(t, []byte("-----BEGIN ")):
		return "this is a PEM file (" + strings.TrimSpace(string(t[len("-----BEGIN "):min(len(t), 40)])) + "…), not an S/MIME signed list: give the document openssl smime -sign writes"
	case len(t) > 1 && t[0] == 0x30 && t[1] >= 0x80 && t[1] <= 0x84: // a DER SEQUENCE
		return "this is binary DER (a bare PKCS#7 or certificate?), not an S/MIME signed list: give the document openssl smime -sign writes"
	}
	return ""
}

// mediaType parses the Content-Type of hdr (RFC 2045 §5.1): type, subtype and parameter
// names are case-insensitive and come back lower-case; comments are allowed.
func mediaType(hdr textproto.MIMEHeader) (string, map[string]string, error) {
	v := hdr.Get("Content-Type")
	if v == "" {
		return "", nil, errors.New("missing")
	}
	mt, params, err := mime.ParseMediaType(structured(v))
	if err != nil {
		return "", nil, fmt.Errorf("%q: %w", v, err)
	}
	return mt, params, nil
}

// structured removes the comments of a structured header field value (RFC 5322 §3.2.2:
// "(…)", nested, with quoted pairs, outside quoted strings), as in
// "MIME-Version: 1.0 (Created by vmcaster)", and trims it. net/mail does this only for
// addresses and dates, mime.ParseMediaType not at all. An unclosed comment is kept as
// written, so that the parse of the value fails on it.
func structured(v string) string {
	if !strings.ContainsRune(v, '(') {
		return strings.TrimSpace(v)
	}
	var b strings.Builder
	depth, quoted := 0, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && (quoted || depth > 0) && i+1 < len(v):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(v[i+1])
			}
			i++
			continue
		case quoted:
			quoted = c != '"'
		case c == '"' && depth == 0:
			quoted = true
		case c == '(':
			depth++
			continue
		case c == ')' && depth > 0:
			depth--
			continue
		}
		if depth == 0 {
			b.WriteByte(c)
		}
	}
	if depth > 0 || quoted {
		return strings.TrimSpace(v)
	}
	return strings.TrimSpace(b.String())
}

// readHeader reads a MIME header block and returns it and what follows the blank line.
// net/textproto unfolds continuation lines and canonicalizes the field names.
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
	mt, _, err := mediaType(hdr)
	if err != nil {
		return nil, fmt.Errorf("Content-Type: %w", err)
	}
	if mt != "application/x-pkcs7-signature" && mt != "application/pkcs7-signature" {
		return nil, fmt.Errorf("Content-Type %q: want application/pkcs7-signature", mt)
	}
	return decodeBase64Body(hdr, body)
}

// decodeBase64Body decodes a PKCS#7 body sent in base64, the only transfer encoding S/MIME
// tools use for it.
func decodeBase64Body(hdr textproto.MIMEHeader, body []byte) ([]byte, error) {
	if cte := strings.ToLower(structured(hdr.Get("Content-Transfer-Encoding"))); cte != "base64" {
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
// a header of Content-Type text/plain or application/json (what -text writes). A leading
// byte order mark, which JSON parsers refuse and RFC 8259 lets them ignore, is dropped.
func content(entity []byte) ([]byte, error) {
	trimmed := bytes.TrimLeft(entity, " \t\r\n\ufeff")
	if len(trimmed) == 0 {
		return nil, malformed("the signed part is empty")
	}
	if trimmed[0] == '{' || trimmed[0] == '[' {
		return bytes.TrimPrefix(entity, bom), nil
	}
	hdr, body, err := readHeader(entity)
	if err != nil {
		return nil, malformed("the signed part is neither JSON nor a MIME entity: %v", err)
	}
	mt, _, err := mediaType(hdr)
	if err != nil || (mt != "text/plain" && mt != "application/json") {
		return nil, malformed("the signed part has Content-Type %q: want text/plain or application/json", hdr.Get("Content-Type"))
	}
	switch cte := strings.ToLower(structured(hdr.Get("Content-Transfer-Encoding"))); cte {
	case "", "7bit", "8bit", "binary":
	default:
		return nil, malformed("the signed part has Content-Transfer-Encoding %q: vmgate reads only unencoded lists", cte)
	}
	return bytes.TrimPrefix(body, bom), nil
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
