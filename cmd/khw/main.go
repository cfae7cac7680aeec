// Command khw runs "Kubernetes The Hard Way" as a program: a Starlark recipe
// declares the lab, khw plans it and applies it through providers.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/pprof"

	plugin "github.com/hashicorp/go-plugin"
	"github.com/spf13/cobra"
)

// exitError carries an exit code other than 1 (e.g. 2 for a plan with
// changes under --detailed-exitcode).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	os.Exit(run())
}

func run() int {
	defer plugin.CleanupClients()
	// KHW_CPUPROFILE=FILE writes a CPU profile of the run (go tool pprof).
	if p := os.Getenv("KHW_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			defer f.Close() // after the profile is written
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	root := newRoot()
	err := root.Execute()
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintln(os.Stderr, "Error: "+err.Error())
		return 1
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "khw",
		Short: "Kubernetes The Hard Way, as a program",
		Long: `khw builds the lab of "Kubernetes The Hard Way" on one machine from a Starlark
recipe: a bridge and NAT, controller and worker VMs, an nginx load balancer,
a CA with every component certificate, kubeconfigs, an encryption config,
and the files copied to each node. Every step is planned and shown first;
running again changes nothing.`,
		Example: `  khw run recipes/hardway.star                       # build the post's lab
  khw plan recipes/hardway.star                      # show what run would do
  khw run --dry-run --set controllers=3 recipes/hardway.star
  khw run recipes/hardway.star --target pki --target kubeconfig --target encryption
  khw destroy recipes/hardway.star                   # take it all down
  khw graph recipes/hardway.star --out lab.svg       # draw the lab (graphviz)
  khw docs -o text pki                               # the builtins recipes call`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd(), newPlanCmd(), newDestroyCmd(), newSSHCmd(), newSSHConfigCmd(), newGraphCmd(), newDocsCmd(), newPluginsCmd(), newVersionCmd())
	return root
}
