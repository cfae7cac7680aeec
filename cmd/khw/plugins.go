package main

import (
	"context"
	"fmt"
	goruntime "runtime"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/plugins/sdk"
	"github.com/khw-dev/khw/runtime"
	"github.com/khw-dev/khw/runtime/pluginhost"
)

func newPluginsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "plugins",
		Short: "List the provider plugins khw finds, and what they serve",
		Long: `plugins lists every khw-plugin-NAME binary on the search path, starts each one
to ask what it serves, and prints its version and resource types.

Search path, in order: the directories in $KHW_PLUGIN_PATH (':'-separated),
the directory of the khw binary, then $XDG_DATA_HOME/khw/plugins
(~/.local/share/khw/plugins). Set KHW_PLUGIN_PREFIX_NAME to launch one plugin
through a command, e.g. KHW_PLUGIN_PREFIX_HOSTNET="sudo -n -E".`,
		Example: `  khw plugins
  KHW_PLUGIN_PATH=./bin khw plugins`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host := pluginhost.New(all.Registry().InProcess())
			defer host.Close()
			ctx := sdk.WithWarnings(context.Background(), func(msg string) {
				fmt.Fprintf(cmd.ErrOrStderr(), "Warning: %s\n", msg)
			})
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tVERSION\tTYPES\tPATH")
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", runtime.InProcess, runtime.Version, types(host.InProcess), "(built in)")
			for _, f := range host.List() {
				sc, err := host.Describe(ctx, f.Name)
				if err != nil {
					fmt.Fprintf(w, "%s\t-\tERROR: %v\t%s\n", f.Name, err, f.Path)
					continue
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.Name, sc.Version, schemaTypes(sc), f.Path)
			}
			w.Flush()
			fmt.Fprintf(cmd.OutOrStdout(), "\nsearched: %s\n", strings.Join(host.SearchPath, ", "))
			return nil
		},
	}
}

func types(p sdk.Provider) string {
	sc, err := p.Describe(context.Background())
	if err != nil {
		return err.Error()
	}
	return schemaTypes(sc)
}

func schemaTypes(sc *sdk.Schema) string {
	var ts []string
	for _, t := range sc.Types {
		ts = append(ts, t.Type)
	}
	return strings.Join(ts, ",")
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print khw's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "khw %s (provider protocol %d, %s)\n", runtime.Version, sdk.ProtocolVersion, goruntime.Version())
		},
	}
}
