package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/policy/verify"
)

func newListCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Work with endorsers' signed image lists",
	}
	cmd.AddCommand(newListVerifyCommand(g))
	return cmd
}

// listVerifyOptions are the flags of `vmgate list verify`.
type listVerifyOptions struct {
	keys      []string
	signature string
	bundle    string
	// An S/MIME signed list (EGI AppDB) is verified against an IGTF CA directory and the
	// endorser's certificate subject and issuer instead.
	caDir, dn, ca string
}

func (o *listVerifyOptions) AddFlags(f *pflag.FlagSet) {
	// StringArray, not StringSlice: a path may contain a comma.
	f.StringArrayVar(&o.keys, "key", nil, "endorser's PEM public key (cosign.pub); repeat for several keys, any one of them may verify")
	f.StringVar(&o.signature, "signature", "", "detached base64 signature, as cosign sign-blob --output-signature writes it (default FILE.sig)")
	f.StringVar(&o.bundle, "bundle", "", "bundle, as cosign sign-blob --bundle writes it (cosign or --new-bundle-format sigstore bundle)")
	f.StringVar(&o.caDir, "ca-dir", "", "S/MIME signed list: IGTF CA directory (<hash>.0 certificates, <hash>.r0 CRLs), e.g. /etc/grid-security/certificates")
	f.StringVar(&o.dn, "dn", "", `S/MIME signed list: the endorser certificate's subject, one-line form ("/DC=…/CN=host")`)
	f.StringVar(&o.ca, "ca", "", `S/MIME signed list: the endorser certificate's issuer, one-line form ("/DC=…/CN=CA")`)
}

func newListVerifyCommand(_ *globalOptions) *cobra.Command {
	var opts listVerifyOptions
	cmd := &cobra.Command{
		Use:   "verify (--key PUB [--key PUB…] [--signature SIG | --bundle BUNDLE] | --ca-dir DIR --dn DN --ca CA) FILE",
		Short: "Verify the signature of an image list (cosign or S/MIME), offline",
		Long: `Verify that FILE, a HEPiX image list, carries a valid cosign signature by one of the
endorser's public keys, and that the signed list is sound: it parses, every image has an
identifier and a well-formed sha512, no identifier or sha512 appears twice, it was not
created in the future and has not expired. This is what an auditor runs; vmgate sync checks
lists the same way (and also against the subscription and the last accepted list).

The signature is checked over the exact bytes of FILE, offline: the transparency log (Rekor)
and certificates are not consulted, and keyless (certificate) signatures are refused.
Without --signature or --bundle the signature is read from FILE.sig.

With --ca-dir, --dn and --ca, FILE is an S/MIME signed list as EGI AppDB (vmcaster)
publishes it: the detached (or opaque) PKCS#7 signature inside FILE must verify over the
list, not use SHA-1 or MD5, be the only signature, and come from a certificate that chains
to a self-signed CA in DIR, is valid now, whose chain has no certificate revoked by its
issuer's CRL (DIR/<hash>.r0, as openssl's -crl_check_all; a missing or expired CRL is a
refusal), and whose subject and issuer, in OpenSSL's one-line form, are DN and CA and the
list's hv:dn and hv:ca. Any extended key usage is accepted (host certificates rarely carry
emailProtection): the pinned DN and CA are what make the signer the endorser.

Exit codes:
  0  the signature is valid
  1  the signature is invalid or malformed, or the list is: do not trust it
  2  usage error, or a file cannot be read, or a key or the CA directory cannot be read`,
		Example: `  vmgate list verify --key endorser.pub image.list
  vmgate list verify --key old.pub --key new.pub --bundle image.list.bundle image.list
  vmgate list verify --ca-dir /etc/grid-security/certificates \
      --dn "/DC=EU/DC=EGI/C=GR/O=Robots/O=Example/CN=Robot:appdb@example.org" \
      --ca "/DC=EU/DC=EGI/C=GR/O=Example/CN=Example CA" image.list`,
		Args:                  cobra.ExactArgs(1),
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.caDir != "" {
				return runListVerifyX509(opts, args[0], cmd.OutOrStdout())
			}
			if len(opts.keys) == 0 {
				return errors.New(`required flag(s) "key" not set (or --ca-dir, --dn and --ca for an S/MIME signed list)`)
			}
			return runListVerify(opts, args[0], cmd.OutOrStdout())
		},
	}
	opts.AddFlags(cmd.Flags())
	cmd.MarkFlagsMutuallyExclusive("signature", "bundle")
	for _, cosignFlag := range []string{"key", "signature", "bundle"} {
		cmd.MarkFlagsMutuallyExclusive(cosignFlag, "ca-dir")
	}
	cmd.MarkFlagsRequiredTogether("ca-dir", "dn", "ca")
	return cmd
}

func runListVerify(opts listVerifyOptions, file string, stdout io.Writer) error {
	keys, err := verify.LoadKeys(opts.keys...)
	if err != nil {
		return err
	}
	list, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	sigPath, isBundle := opts.bundle, true
	if sigPath == "" {
		sigPath, isBundle = opts.signature, false
	}
	if sigPath == "" {
		sigPath = file + ".sig"
	}
	sig, err := os.ReadFile(sigPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && opts.signature == "" && opts.bundle == "" {
			return fmt.Errorf("signature: %w (give --signature or --bundle)", err)
		}
		return fmt.Errorf("signature: %w", err)
	}
	key, err := verifyListSignature(keys, list, sig, isBundle)
	if err != nil {
		// refused sets exit code 1; %w keeps the verify sentinel for callers.
		return fmt.Errorf("%w: %w", refused(file), err)
	}
	// Only verified bytes are parsed, as vmgate sync does.
	l, err := policy.Parse(list)
	if err == nil {
		err = policy.CheckContent(l, time.Now(), config.DefaultClockSkew)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", refused(fmt.Sprintf("%s: signature valid (key %s), but the list is not", file, key)), err)
	}
	fmt.Fprintf(stdout, "%s: signature valid (key %s); list %s version %s, %d images, expires %s\n",
		file, key, l.Identifier, l.Version, len(l.Images), l.Expires.Format(policy.TimeLayout))
	return nil
}

// verifyListSignature checks the signature or bundle over the list's bytes and names the
// key that verified it. It is the one place the command decides on the signature; checks
// of the list's content belong after it.
func verifyListSignature(keys *verify.Keys, list, sig []byte, isBundle bool) (string, error) {
	if isBundle {
		return keys.BundleKey(list, sig)
	}
	return keys.SignatureKey(list, sig)
}

// runListVerifyX509 verifies an S/MIME signed list as vmgate sync does for an x509
// subscription, then checks its content.
func runListVerifyX509(opts listVerifyOptions, file string, stdout io.Writer) error {
	doc, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	trust := config.X509Trust{CADir: opts.caDir, DN: opts.dn, CA: opts.ca}
	now := time.Now()
	l, _, err := policy.VerifySMIMEList(doc, trust, now)
	if err != nil {
		if r, ok := policy.AsRefusal(err); ok && r.Reason == policy.ReasonConfig {
			return err // the CA directory, not the list: a usage error
		}
		return fmt.Errorf("%w: %w", refused(file), err)
	}
	if err := policy.CheckContent(l, now, config.DefaultClockSkew); err != nil {
		return fmt.Errorf("%w: %w", refused(fmt.Sprintf("%s: signature valid (signer %s), but the list is not", file, opts.dn)), err)
	}
	fmt.Fprintf(stdout, "%s: signature valid (signer %s, issuer %s); list %s version %s, %d images, expires %s\n",
		file, opts.dn, opts.ca, l.Identifier, l.Version, len(l.Images), l.Expires.Format(policy.TimeLayout))
	return nil
}
