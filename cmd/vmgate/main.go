// Command vmgate keeps the endorsed-image policy of a hypervisor: it syncs signed image lists,
// shows what is endorsed and verifies lists for auditors.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	code := exitCode(err)
	if err != nil {
		var o *outcome
		if !errors.As(err, &o) || o.msg != "" {
			fmt.Fprintln(os.Stderr, "vmgate:", err)
		}
	}
	os.Exit(code)
}
