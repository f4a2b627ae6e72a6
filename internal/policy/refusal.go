package policy

import (
	"errors"
	"fmt"
)

// Reason is why a list was refused: a short, stable code for history, metrics and scripts.
type Reason string

// The reasons a list is refused. Nothing from a refused list reaches the snapshot.
const (
	ReasonConfig              Reason = "config"
	ReasonFetch               Reason = "fetch-failed"
	ReasonTooLarge            Reason = "too-large"
	ReasonMissingSignature    Reason = "missing-signature"
	ReasonBadSignature        Reason = "bad-signature"
	ReasonMalformed           Reason = "malformed"
	ReasonBadSHA512           Reason = "bad-sha512"
	ReasonIdentifierMismatch  Reason = "identifier-mismatch"
	ReasonCreatedInFuture     Reason = "created-in-future"
	ReasonExpired             Reason = "expired"
	ReasonFrozen              Reason = "frozen"
	ReasonRollback            Reason = "rollback"
	ReasonDuplicateIdentifier Reason = "duplicate-identifier"
	ReasonDuplicateSHA512     Reason = "duplicate-sha512"

	// S/MIME signed lists (x509 subscriptions).
	ReasonSMIMEMalformed  Reason = "smime-malformed"
	ReasonUntrustedSigner Reason = "untrusted-signer"
	ReasonSignerExpired   Reason = "signer-expired"
	ReasonSignerRevoked   Reason = "signer-revoked"
	ReasonCRLUnavailable  Reason = "crl-unavailable"
	ReasonSignerMismatch  Reason = "signer-mismatch"
	// ReasonWeakAlgorithm: signed with SHA-1 or MD5 (or a certificate so signed).
	ReasonWeakAlgorithm Reason = "weak-algorithm"
	// ReasonUnsupportedSignature: signed in a form vmgate does not verify (SHA-224,
	// RSA-PSS, a signer named by key identifier): neither accepted nor called altered.
	ReasonUnsupportedSignature Reason = "unsupported-signature"
)

// hints tell the operator what to do about each reason.
var hints = map[Reason]string{
	ReasonConfig:               "fix the subscription in the configuration file (keys, CA file)",
	ReasonFetch:                "check the URL, the network and the endorser's server; the last good list stays in force until it expires",
	ReasonTooLarge:             "raise max_size for this subscription if the endorser's list really is this large",
	ReasonMissingSignature:     "check signature_url / bundle_url; the endorser must publish a signature beside the list",
	ReasonBadSignature:         "the list was not signed by a key in cosign_keys, or its S/MIME signature does not match its content (altered after signing): ask the endorser, and check that cosign_keys holds their current public key",
	ReasonMalformed:            "the endorser published a list vmgate cannot read; report it to them",
	ReasonBadSHA512:            "the endorser published an invalid sl:checksum:sha512; report it to them",
	ReasonIdentifierMismatch:   "the URL serves another list than the one subscribed to: check url and identifier",
	ReasonCreatedInFuture:      "check this host's clock (NTP) and the endorser's",
	ReasonExpired:              "the endorser has not re-signed the list in time; ask them to publish a fresh one",
	ReasonFrozen:               "the list is older than max_age: the endorser stopped publishing or someone replays an old list; ask the endorser",
	ReasonRollback:             "an older or altered list was served in place of a newer one (replay or tampering); investigate before trusting this source",
	ReasonDuplicateIdentifier:  "the endorser published two images with one dc:identifier; report it to them",
	ReasonDuplicateSHA512:      "the endorser published one image twice; report it to them",
	ReasonSMIMEMalformed:       "the URL did not serve an S/MIME signed list vmgate can read (multipart/signed or application/pkcs7-mime, PKCS#7; the message says what it is): check url and token, or use cosign_keys if the endorser signs with cosign",
	ReasonUntrustedSigner:      "the signer's certificate does not chain to a CA in x509.ca_dir (or there is not exactly one signer): install the IGTF CA bundle there, or ask the endorser",
	ReasonSignerExpired:        "the signer's certificate (or a CA of its chain) is not valid now: check this host's clock, and ask the endorser to re-sign with a current certificate",
	ReasonSignerRevoked:        "the signer's certificate was revoked by its CA: do not trust this list; ask the endorser to re-sign with a new certificate",
	ReasonCRLUnavailable:       "a CA of the signer's chain has no current CRL in x509.ca_dir (<hash>.r0): run fetch-crl and check its timer",
	ReasonWeakAlgorithm:        "the list's signature (or its signer's certificate) uses SHA-1 or MD5, whose collisions can be forged: ask the endorser to re-sign with SHA-256 (openssl smime -sign -md sha256); the last good list stays in force until it expires",
	ReasonUnsupportedSignature: "the list is signed in a form vmgate does not verify (the message names it): ask the endorser to sign with openssl smime -sign's defaults (SHA-256, PKCS#1 v1.5 or ECDSA, issuer and serial)",
	ReasonSignerMismatch:       "the list is signed by another certificate than x509.dn / x509.ca, or names another endorser (hv:dn, hv:ca) than its signer: check the subscription against the endorser's certificate, else suspect substitution",
}

// RefusalError is a refused list: the reason code and a message that names what was wrong.
type RefusalError struct {
	Reason Reason
	Msg    string
	Err    error // the underlying cause, if any
}

func (e *RefusalError) Error() string { return fmt.Sprintf("%s: %s", e.Reason, e.Msg) }

func (e *RefusalError) Unwrap() error { return e.Err }

// Hint says what the operator can do about the refusal.
func (e *RefusalError) Hint() string { return hints[e.Reason] }

func refuse(r Reason, format string, args ...any) *RefusalError {
	return &RefusalError{Reason: r, Msg: fmt.Sprintf(format, args...)}
}

// AsRefusal classifies err as a refusal, treating parse errors as malformed lists.
func AsRefusal(err error) (*RefusalError, bool) {
	var r *RefusalError
	if errors.As(err, &r) {
		return r, true
	}
	var m *MalformedError
	if errors.As(err, &m) {
		reason := ReasonMalformed
		if m.Key == "sl:checksum:sha512" {
			reason = ReasonBadSHA512
		}
		return &RefusalError{Reason: reason, Msg: m.Error(), Err: err}, true
	}
	return nil, false
}
