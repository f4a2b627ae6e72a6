package main

import "github.com/spf13/cobra"

func newListCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{Use: "list", Short: "TODO"}
}
