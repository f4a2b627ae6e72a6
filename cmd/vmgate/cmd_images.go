package main

import "github.com/spf13/cobra"

func newImagesCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{Use: "images", Short: "TODO"}
}
