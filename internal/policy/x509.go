package policy

import (
	"errors"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy/smime"
)

// VerifySMIMEList verifies an S/MIME signed list (EGI AppDB, vmcaster) against an x509
// subscription, then parses the list it signs and checks that the list names its signer:
// hv:dn and hv:ca must be the signer certificate's subject and issuer, exactly, in the
// one-line form. Only verified bytes are parsed. It returns the list and the signed list in
// canonical (CRLF) form, whose digest identifies the version as the digest of a
// cosign-signed list does: the same list signed again, in text or -binary mode, is the same
// version, not a rollback.
func VerifySMIMEList(doc []byte, trust config.X509Trust, now time.Time) (*List, []byte, error) {
	r, err := smime.Verify(doc, smime.Trust{CADir: trust.CADir, DN: trust.DN, CA: trust.CA}, now)
	if err != nil {
		return nil, nil, smimeRefusal(err)
	}
	l, err := Parse(r.Content)
	if err != nil {
		return nil, nil, err
	}
	if err := CheckSigner(l, r.SignerDN, r.IssuerDN); err != nil {
		return nil, nil, err
	}
	return l, smime.Canonical(r.Content), nil
}

// CheckSigner refuses a list whose hv:endorser does not name the certificate that signed it:
// a list must not claim another endorser than the one whose signature makes it trusted.
func CheckSigner(l *List, signerDN, issuerDN string) error {
	if l.Endorser.DN != signerDN {
		return refuse(ReasonSignerMismatch, "list %s names endorser hv:dn %s but was signed by %s", l.Identifier, l.Endorser.DN, signerDN)
	}
	if l.Endorser.CA != issuerDN {
		return refuse(ReasonSignerMismatch, "list %s names hv:ca %s but its signer was issued by %s", l.Identifier, l.Endorser.CA, issuerDN)
	}
	return nil
}

// smimeRefusal gives each way an S/MIME list fails its own reason.
func smimeRefusal(err error) *RefusalError {
	reason := ReasonBadSignature
	for _, m := range []struct {
		err    error
		reason Reason
	}{
		{smime.ErrCADir, ReasonConfig},
		{smime.ErrMalformed, ReasonSMIMEMalformed},
		{smime.ErrBadSignature, ReasonBadSignature},
		{smime.ErrWeakAlgorithm, ReasonWeakAlgorithm},
		{smime.ErrUnsupported, ReasonUnsupportedSignature},
		{smime.ErrUntrusted, ReasonUntrustedSigner},
		{smime.ErrExpired, ReasonSignerExpired},
		{smime.ErrRevoked, ReasonSignerRevoked},
		{smime.ErrCRL, ReasonCRLUnavailable},
		{smime.ErrSignerMismatch, ReasonSignerMismatch},
	} {
		if errors.Is(err, m.err) {
			reason = m.reason
			break
		}
	}
	return &RefusalError{Reason: reason, Msg: err.Error(), Err: err}
}
