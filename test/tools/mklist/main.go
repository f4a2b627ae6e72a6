// Command mklist writes an unsigned HEPiX image list of N made-up images, and of the files
// given with -image, for benchmarks and tests: go run ./test/tools/mklist -n 10000 -o list.json
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vmgate/vmgate/internal/policy/policytest"
)

func main() {
	n := flag.Int("n", 10, "number of images")
	out := flag.String("o", "-", "output file, - for stdout")
	id := flag.String("identifier", "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e", "dc:identifier of the list")
	version := flag.String("version", time.Now().UTC().Format("20060102150405"), "hv:version of the list")
	var files []string
	flag.Func("image", "also endorse this file's bytes (repeatable); its identifier is the file name", func(s string) error {
		files = append(files, s)
		return nil
	})
	flag.Parse()
	now := time.Now().UTC().Truncate(time.Second)
	imgs := policytest.Images(*n)
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mklist:", err)
			os.Exit(1)
		}
		imgs = append(imgs, policytest.ImageFor(filepath.Base(p), b))
	}
	l := policytest.List{Identifier: *id, Version: *version, Created: now.Add(-time.Minute), Expires: now.Add(30 * 24 * time.Hour), Images: imgs}
	data := l.Bytes()
	var err error
	if *out == "-" {
		_, err = os.Stdout.Write(data)
	} else {
		err = os.WriteFile(*out, data, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mklist:", err)
		os.Exit(1)
	}
}
