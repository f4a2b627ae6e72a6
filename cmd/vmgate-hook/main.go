// Command vmgate-hook is the libvirt qemu hook. libvirtd runs it at every domain start, so its
// import graph is kept small: no cosign, no gophercloud, no viper.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "vmgate-hook: TODO")
	os.Exit(1)
}
