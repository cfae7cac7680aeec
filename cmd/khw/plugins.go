package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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
to ask what it serves, and prints its version and resource types. Then it
checks that every resource type khw's builtins declare is served by exactly
one provider found, the one the builtins declare: a mismatch is an error that
names the type and the providers (a type whose plugin is not installed is
only listed).

Search path, in order: the directories in $KHW_PLUGIN_PATH (':'-separated),
the directory of the khw binary, then $XDG_DATA_HOME/khw/plugins
(~/.local/share/khw/plugins). Set KHW_PLUGIN_PREFIX_NAME to launch one plugin
through a command, e.g. KHW_PLUGIN_PREFIX_HOSTNET="sudo -n -E".`,
		Example: `  khw plugins
  KHW_PLUGIN_PATH=./bin khw plugins`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg := all.Registry()
			host := pluginhost.New(reg.InProcess())
			defer host.Close()
			ctx := sdk.WithWarnings(context.Background(), func(msg string) {
				fmt.Fprintf(cmd.ErrOrStderr(), "Warning: %s\n", msg)
			})
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tVERSION\tTYPES\tPATH")
			in, err := host.InProcess.Describe(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", runtime.InProcess, runtime.Version, schemaTypes(in), "(built in)")
			schemas := []*sdk.Schema{in}
			for _, f := range host.List() {
				sc, err := host.Describe(ctx, f.Name)
				if err != nil {
					fmt.Fprintf(w, "%s\t-\tERROR: %v\t%s\n", f.Name, err, f.Path)
					continue
				}
				schemas = append(schemas, sc)
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.Name, sc.Version, schemaTypes(sc), f.Path)
			}
			w.Flush()
			fmt.Fprintf(cmd.OutOrStdout(), "\nsearched: %s\n", strings.Join(host.SearchPath, ", "))
			return checkProviders(cmd.OutOrStdout(), reg, schemas)
		},
	}
}

// checkProviders says whether every resource type the builtins declare is
// served by exactly one of the providers found, the declared one. A type
// whose plugin is not installed is listed, and fails nothing: a run that
// needs it says so. Any other mismatch (two plugins serving one type, a
// plugin that lacks a type khw needs from it) is an error.
func checkProviders(w io.Writer, reg *runtime.Registry, schemas []*sdk.Schema) error {
	err := reg.CheckProviders(schemas)
	if err == nil {
		fmt.Fprintln(w, "check: every resource type khw's builtins declare is served by exactly one provider found")
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var missing []string
	var bad []error
	for _, e := range errs {
		var te *runtime.TypeError
		if errors.As(e, &te) && te.Missing {
			need := strings.Join(te.Providers, ", ")
			if need == runtime.AnyPlugin {
				need = "any plugin that serves it"
			}
			missing = append(missing, fmt.Sprintf("%s (%s)", te.Type, need))
			continue
		}
		bad = append(bad, e)
	}
	if len(missing) > 0 {
		fmt.Fprintf(w, "not installed: no provider found serves %s\n", strings.Join(missing, ", "))
	}
	if len(bad) > 0 {
		return errors.Join(bad...)
	}
	return nil
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
