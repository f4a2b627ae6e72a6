package main

import "github.com/spf13/cobra"

func newSyncCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{Use: "sync", Short: "TODO"}
}
