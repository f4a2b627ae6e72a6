package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vmgate/vmgate/internal/endorse"
	"github.com/vmgate/vmgate/internal/policy"
)

const endorseExitCodes = `

Exit codes:
  0  done
  1  refused: the request cannot be carried out as given (the message says why)
  2  error: a file cannot be read or written, bad usage`

func newEndorseCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "endorse",
		Short: "Keep a signed image list as an endorser: add, revoke, sign, with a history",
		Long: `endorse is the endorser's side of the policy: it keeps a signed, up-to-date HEPiX image
list whose every change (image added, image removed and why, version signed) is recorded,
with the time and the user, in an append-only, hash-chained history next to the list.

For a list FILE it keeps, next to it: FILE.sig and FILE.bundle (written by sign, as cosign
sign-blob writes them), FILE.history (the history), FILE.d/software/ (software inventories,
verbatim) and FILE.d/versions/ (every signed version with its signature).

A typical session:
  vmgate endorse keygen
  vmgate endorse init --list image.list --identifier UUID --title T --endorser-dn DN --endorser-ca CA --uri https://…/image.list
  vmgate endorse add --list image.list --image el9.qcow2 --title "EL9 worker" --version 9.4-1 --software el9.spdx.json
  vmgate endorse sign --list image.list --key cosign.key
  (publish image.list and image.list.sig or image.list.bundle)
  vmgate endorse remove --list image.list IDENTIFIER --reason "CVE-2026-1234"
  vmgate endorse sign --list image.list --key cosign.key

Changes made since the last sign are pending: sites see them only once the list is signed
again, and until then FILE no longer matches FILE.sig.` + endorseExitCodes,
	}
	cmd.AddCommand(
		newEndorseInitCommand(g),
		newEndorseAddCommand(g),
		newEndorseRemoveCommand(g),
		newEndorseSignCommand(g),
		newEndorseKeygenCommand(g),
		newEndorseHistoryCommand(g),
		newEndorseVerifyHistoryCommand(g),
	)
	return cmd
}

// endorseErr gives refusals exit code 1 and leaves failures at 2.
func endorseErr(err error) error {
	if errors.Is(err, endorse.ErrRefused) {
		return &outcome{code: exitRefused, msg: err.Error()}
	}
	return err
}

func requireFlags(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		if err := cmd.MarkFlagRequired(n); err != nil {
			panic(err) // only if a flag above is renamed
		}
	}
}

func newEndorseInitCommand(_ *globalOptions) *cobra.Command {
	var list string
	var o endorse.InitOptions
	cmd := &cobra.Command{
		Use:   "init --list FILE --identifier UUID --title TITLE --endorser-dn DN --endorser-ca CA [--uri URL] [--expires-in 720h]",
		Short: "Start a new, empty image list",
		Long: `init writes a new HEPiX image list with no images, version 0, and starts its history.
It refuses to replace an existing list or history.

--identifier is the list's dc:identifier, a UUID that sites pin in their subscription;
--endorser-dn and --endorser-ca are the X.509 subject and issuer of the endorser
(hv:endorser); --uri is where the list will be published, and where images are placed by
default (their file name beside it); --expires-in is how long each signed version stays
valid (sign keeps this period unless given another).` + endorseExitCodes,
		Example:               `  vmgate endorse init --list image.list --identifier 5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e --title "Example VO images" --endorser-dn "/DC=org/DC=example/CN=Jane Doe" --endorser-ca "/DC=org/DC=example/CN=Example CA" --uri https://images.example.org/vo/image.list`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := endorse.Open(list).Init(o); err != nil {
				return endorseErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: new list %s, no images, expires %s after each signature; history in %s\n",
				list, o.Identifier, o.ExpiresIn, endorse.Open(list).HistoryPath())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&list, "list", "", "the list file to create")
	f.StringVar(&o.Identifier, "identifier", "", "the list's dc:identifier (a UUID)")
	f.StringVar(&o.Title, "title", "", "the list's dc:title")
	f.StringVar(&o.EndorserDN, "endorser-dn", "", "the endorser's X.509 subject DN (hv:dn)")
	f.StringVar(&o.EndorserCA, "endorser-ca", "", "the X.509 DN of the endorser's CA (hv:ca)")
	f.StringVar(&o.URI, "uri", "", "where the list is published (hv:uri)")
	f.DurationVar(&o.ExpiresIn, "expires-in", endorse.DefaultExpiresIn, "how long a signed version stays valid")
	requireFlags(cmd, "list", "identifier", "title", "endorser-dn", "endorser-ca")
	return cmd
}

func newEndorseAddCommand(_ *globalOptions) *cobra.Command {
	var list string
	var o endorse.AddOptions
	cmd := &cobra.Command{
		Use:   "add --list FILE --image PATH --title TITLE --version VERSION [--identifier UUID] [--software FILE] [--uri URL]",
		Short: "Endorse an image (pending until sign)",
		Long: `add hashes the image's bytes (sha512, size), detects its format from them (QCOW2, RAW,
VMDK, OVA), and adds it to the list. With the --identifier of a listed image it replaces
that image by a new version (sites then revoke the old bytes as "replaced by version …").
Without --identifier the image gets a new UUID.

It refuses what a site could not check against the hash: a qcow2 image with a backing file
(endorse the base image: that is what the hook identifies), a qcow2 or VMDK whose data lies
in other files, a compressed file, another disk format (VHDX, VDI, …), an empty file; and an
image whose sha512 another entry of the list has already.

--software is the image's software inventory: an SPDX or CycloneDX JSON document, or the
output of rpm -qa, dpkg-query -W or dpkg-query -l. It is kept verbatim in
FILE.d/software/<sha512>.json or .txt, and the image entry references it by
vmgate:software:sha512 and vmgate:software:format. --uri is where sites download the image (hv:uri); by default the
URI the image had, or its file name beside the list's hv:uri.

The change is recorded in the history at once and reaches sites with the next sign.` + endorseExitCodes,
		Example:               `  vmgate endorse add --list image.list --image worker-el9.qcow2 --title "Worker EL9" --version 9.4-20261122 --software worker-el9.rpm-qa.txt`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := endorse.Open(list).Add(o)
			if err != nil {
				return endorseErr(err)
			}
			w := cmd.OutOrStdout()
			verb := "added"
			if res.Replaced != "" {
				verb = "replaced " + res.Replaced[:16] + "… by"
			}
			fmt.Fprintf(w, "%s: %s image %s %q version %s: %s, %d bytes, sha512 %s\n", list, verb, res.Identifier, o.Title, o.Version, res.Info.Format, res.Info.Size, res.Info.SHA512)
			fmt.Fprintf(w, "  uri %s\n", res.URI)
			if res.Software != nil {
				fmt.Fprintf(w, "  software %s, %d packages, kept as %s\n", res.Software.Format, res.Software.Packages, res.Software.Path)
			}
			fmt.Fprintln(w, "  pending: run vmgate endorse sign to publish it")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&list, "list", "", "the list file")
	f.StringVar(&o.Image, "image", "", "the image file to endorse")
	f.StringVar(&o.Title, "title", "", "the image's dc:title")
	f.StringVar(&o.Version, "version", "", "the image's hv:version")
	f.StringVar(&o.Identifier, "identifier", "", "the image's dc:identifier (default: a new UUID; a listed one replaces that image)")
	f.StringVar(&o.Software, "software", "", "software inventory: SPDX or CycloneDX JSON, or rpm -qa, dpkg-query -W or -l output")
	f.StringVar(&o.URI, "uri", "", "where sites download the image (hv:uri)")
	requireFlags(cmd, "list", "image", "title", "version")
	return cmd
}

func newEndorseRemoveCommand(_ *globalOptions) *cobra.Command {
	var list, reason string
	cmd := &cobra.Command{
		Use:   "remove --list FILE IDENTIFIER --reason TEXT",
		Short: "Revoke an image: remove it from the list, with the reason in the history",
		Long: `remove takes the image whose dc:identifier is IDENTIFIER out of the list and records the
reason in the history. This is how HEPiX lists revoke: once the next signed version is
published, every site that syncs it marks the image revoked and its hook refuses to start
VMs on it (vmgate terminate --revoked takes down those running). Until sign, the
revocation is pending (see history).` + endorseExitCodes,
		Example:               `  vmgate endorse remove --list image.list 8a1f2e3d-4c5b-4a69-8877-665544332211 --reason "CVE-2026-1234 in openssh"`,
		Args:                  cobra.ExactArgs(1),
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := endorse.Open(list).Remove(args[0], reason)
			if err != nil {
				return endorseErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: removed image %s %q version %s (sha512 %s…): %s\n  pending: run vmgate endorse sign to revoke it on sites\n",
				list, res.Identifier, res.Title, res.Version, res.SHA512[:16], reason)
			return nil
		},
	}
	cmd.Flags().StringVar(&list, "list", "", "the list file")
	cmd.Flags().StringVar(&reason, "reason", "", "why the image is revoked (recorded in the history)")
	requireFlags(cmd, "list", "reason")
	return cmd
}

func newEndorseSignCommand(_ *globalOptions) *cobra.Command {
	var list, keyPath string
	var expiresIn time.Duration
	cmd := &cobra.Command{
		Use:   "sign --list FILE --key KEY [--expires-in DURATION]",
		Short: "Sign the list as a new version: FILE.sig and FILE.bundle as cosign sign-blob writes them",
		Long: `sign publishes the list's pending changes as a new version: it bumps hv:version (1, 2, 3…),
sets dc:date:created to now and dc:date:expires to now plus the list's validity period
(--expires-in, else the period it had), signs the exact bytes and writes FILE.sig (base64,
as cosign sign-blob --output-signature) and FILE.bundle (as cosign sign-blob --bundle,
without a transparency log entry). cosign verify-blob --key cosign.pub
--insecure-ignore-tlog and vmgate sync accept both. The signed bytes, signature and bundle
are also kept in FILE.d/versions/, and the version in the history. It refuses to sign a list
whose images are not what the history's adds and removes leave (an interrupted edit, or an
edit by hand): redo the change with add or remove.

Sign regularly even without changes: sites refuse a list that has expired or is older than
their max_age (720h by default).

KEY is a cosign private key (cosign generate-key-pair, cosign import-key-pair, vmgate
endorse keygen), whose password is read from COSIGN_PASSWORD or asked for on the terminal,
or an unencrypted PEM EC key as openssl ecparam -genkey -name prime256v1 writes it.` + endorseExitCodes,
		Example:               `  COSIGN_PASSWORD=… vmgate endorse sign --list image.list --key cosign.key`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keyPEM, err := os.ReadFile(keyPath)
			if err != nil {
				return fmt.Errorf("key: %w", err)
			}
			signer, err := endorse.LoadSigner(keyPEM, keyPassword(cmd.ErrOrStderr()))
			if err != nil {
				return endorseErr(fmt.Errorf("key %s: %w", keyPath, err))
			}
			w := endorse.Open(list)
			res, err := w.Sign(endorse.SignOptions{Signer: signer, ExpiresIn: expiresIn})
			if err != nil {
				return endorseErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: signed version %s (%d images, %d changes published), created %s, expires %s, key %s\n  wrote %s, %s; archived as %s\n",
				list, res.Version, res.Images, res.Pending, res.Created.Format(policy.TimeLayout), res.Expires.Format(policy.TimeLayout),
				signer.Fingerprint, w.SignaturePath(), w.BundlePath(), res.Archive)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&list, "list", "", "the list file")
	f.StringVar(&keyPath, "key", "", "private key: cosign.key, or an unencrypted PEM EC key")
	f.DurationVar(&expiresIn, "expires-in", 0, "validity of this version (default: the list's current period)")
	requireFlags(cmd, "list", "key")
	return cmd
}

func newEndorseKeygenCommand(_ *globalOptions) *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "keygen [--output-key-prefix PREFIX]",
		Short: "Make a signing key pair, as cosign generate-key-pair does",
		Long: `keygen writes PREFIX.key, an ECDSA P-256 private key encrypted with a password in cosign's
format (mode 0600), and PREFIX.pub, its public key in PEM, which sites put in their
subscription's cosign_keys. cosign accepts the pair as its own. The password comes from
COSIGN_PASSWORD, or is asked for twice on the terminal. keygen never replaces an existing
file.` + endorseExitCodes,
		Example:               `  vmgate endorse keygen --output-key-prefix endorser`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, p := range []string{prefix + ".key", prefix + ".pub"} {
				if _, err := os.Lstat(p); err == nil {
					return refused(p + " exists: not replacing a key")
				}
			}
			priv, pub, err := endorse.GenerateKeyPair(keyPassword(cmd.ErrOrStderr()))
			if err != nil {
				return endorseErr(err)
			}
			if err := endorse.WriteKeyPair(prefix, priv, pub); err != nil {
				return endorseErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Private key written to %s.key\nPublic key written to %s.pub\n", prefix, prefix)
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "output-key-prefix", "cosign", "write PREFIX.key and PREFIX.pub")
	return cmd
}

func newEndorseHistoryCommand(_ *globalOptions) *cobra.Command {
	var list string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "history --list FILE [--json]",
		Short: "Show every change to the list: versions signed, images added and removed, by whom, why",
		Long: `history prints the list's history, oldest first: every version signed (with the sha512 of
the bytes signed and the key), every image added (sha512, size, format, software inventory)
or removed (with the reason), when, and by whom (uid and user name, host). Changes made
since the last sign are marked pending.

--json prints a JSON array; each object has seq, time, hash, pending, action (init, add,
remove, sign), list, list_version, and as they apply list_sha512, key, archive, images,
expires, image, title, version, sha512, size, format, replaces, software (sha512, format,
packages, path), reason, uid, user, host.` + endorseExitCodes,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			recs, err := endorse.Open(list).History()
			if err != nil {
				return endorseErr(err)
			}
			if recs == nil {
				if _, err := os.Stat(list); err != nil {
					return fmt.Errorf("list: %w", err)
				}
				recs = []endorse.Record{}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(recs)
			}
			printEndorseHistory(cmd.OutOrStdout(), recs)
			return nil
		},
	}
	cmd.Flags().StringVar(&list, "list", "", "the list file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	requireFlags(cmd, "list")
	return cmd
}

func printEndorseHistory(out io.Writer, recs []endorse.Record) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tUSER\tACTION\tLIST VERSION\tIMAGE\tSHA512\tDETAIL")
	pending := 0
	for _, r := range recs {
		action := r.Action
		if r.Pending && r.Action != endorse.ActionInit {
			action += " (pending)"
			pending++
		}
		sha := r.SHA512
		if r.Action == endorse.ActionSign {
			sha = r.ListSHA512
		}
		sha = shortSHA(sha)
		var detail []string
		switch r.Action {
		case endorse.ActionInit:
			detail = append(detail, fmt.Sprintf("%q", r.Title))
		case endorse.ActionAdd:
			detail = append(detail, fmt.Sprintf("%q version %s, %s, %d bytes", r.Title, r.Version, r.Format, r.Size))
			if r.Replaces != "" {
				detail = append(detail, "replaces "+shortSHA(r.Replaces))
			}
			if r.Software != nil {
				detail = append(detail, fmt.Sprintf("software %s (%d packages) %s", r.Software.Format, r.Software.Packages, r.Software.Path))
			}
		case endorse.ActionRemove:
			detail = append(detail, fmt.Sprintf("%q version %s, reason: %s", r.Title, r.Version, r.Reason))
		case endorse.ActionSign:
			detail = append(detail, fmt.Sprintf("%d images, expires %s, key %s, archived %s", r.Images, r.Expires, r.Key, r.Archive))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s (%d)@%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.UTC().Format(time.RFC3339), r.User, r.UID, r.Host,
			action, r.ListVersion, dash(r.Image), dash(sha), strings.Join(detail, "; "))
	}
	tw.Flush()
	if pending > 0 {
		fmt.Fprintf(out, "%d change(s) pending: not yet signed, sites do not see them (run vmgate endorse sign)\n", pending)
	}
}

// shortSHA is the start of a hash, for a table; the history may hold anything.
func shortSHA(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newEndorseVerifyHistoryCommand(_ *globalOptions) *cobra.Command {
	var list string
	cmd := &cobra.Command{
		Use:   "verify-history --list FILE",
		Short: "Check the list's history: hash chain, archived versions, the list itself",
		Long: `verify-history walks the hash chain of FILE.history and names the first entry that was
edited, removed or reordered (a torn tail from a crash is told apart). Then it replays the
history: each signed version archived in FILE.d/versions/ must have the sha512 the history
recorded and hold exactly the images the adds and removes before it leave; so must FILE,
which must be the last signed version byte for byte unless changes are pending; and every
archived version must have its sign entry. This shows entries cut from the end of the
history too, as long as FILE or the archive still reflects them.

Exit codes:
  0  the history is intact
  1  it is not: the message names what is wrong
  2  the history cannot be read`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := endorse.Open(list)
			rep, err := w.VerifyHistory()
			if err != nil {
				return endorseErr(err)
			}
			var b bytes.Buffer
			fmt.Fprintf(&b, "%s: %s; %d signed versions match their archive, %d changes pending", w.HistoryPath(), rep.Journal, rep.Signed, rep.Pending)
			for _, p := range rep.Problems {
				fmt.Fprintf(&b, "\n  %s", p)
			}
			if !rep.Intact() {
				return refused(b.String())
			}
			fmt.Fprintln(cmd.OutOrStdout(), b.String())
			return nil
		},
	}
	cmd.Flags().StringVar(&list, "list", "", "the list file")
	requireFlags(cmd, "list")
	return cmd
}

// keyPassword reads a key's password the way cosign does: COSIGN_PASSWORD when set (even
// empty), else from the terminal without echo. Without a terminal there is no one to ask,
// and reading a password from a pipe would hide a script's mistake.
func keyPassword(prompt io.Writer) endorse.PasswordFunc {
	return func(confirm bool) ([]byte, error) {
		if pw, ok := os.LookupEnv("COSIGN_PASSWORD"); ok {
			return []byte(pw), nil
		}
		fd := int(os.Stdin.Fd())
		if !term.IsTerminal(fd) {
			return nil, errors.New("set COSIGN_PASSWORD: stdin is not a terminal to ask for the password")
		}
		fmt.Fprint(prompt, "Enter password for private key: ")
		pw, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		if !confirm {
			return pw, nil
		}
		fmt.Fprint(prompt, "Enter password for private key again: ")
		again, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("passwords do not match")
		}
		return pw, nil
	}
}
