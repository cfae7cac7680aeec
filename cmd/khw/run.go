package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/builtins/pki"
	"github.com/khw-dev/khw/runtime"
	"github.com/khw-dev/khw/runtime/pluginhost"
)

// WorkdirEnv overrides the default workdir.
const WorkdirEnv = "KHW_WORKDIR"

// defaultWorkdir is the post's own workspace directory.
func defaultWorkdir() string {
	if w := os.Getenv(WorkdirEnv); w != "" {
		return w
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "kubernetes-the-hard-way"
	}
	return filepath.Join(home, "kubernetes-the-hard-way")
}

type options struct {
	sets        []string
	valueFiles  []string
	resetParams bool
	listParams  bool // khw plan: list the recipe's parameters
	workdir     string
	root        string
	targets     []string
	output      string
	parallelism int
	refresh     bool
	dryRun      bool
	detailed    bool
	destroy     bool
}

// recipeFlags are the flags of every command that evaluates a recipe.
func (o *options) recipeFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&o.sets, "set", nil, "set a recipe parameter, `KEY=VALUE` (repeatable)")
	f.StringArrayVar(&o.valueFiles, "values", nil, "read parameters from `FILE`, one KEY=VALUE a line (repeatable; --set wins; "+runtime.ValuesFile+" beside the recipe is read without it)")
	f.StringVar(&o.root, "root", "", "recipe root for load() and files (default: the enclosing recipes/ directory)")
}

func (o *options) flags(cmd *cobra.Command) {
	o.recipeFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&o.workdir, "workdir", defaultWorkdir(), "where generated files and khw's state live (default from $"+WorkdirEnv+")")
	f.StringArrayVar(&o.targets, "target", nil, "only resources whose address starts with `PREFIX`, and what they depend on (repeatable)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	f.IntVar(&o.parallelism, "parallelism", 10, "how many resources may be applied at once")
	f.BoolVar(&o.refresh, "refresh", true, "read back the real world (files, VMs, rules) before planning")
	f.BoolVar(&o.resetParams, "reset-params", false, "ignore the parameters the last run recorded: defaults, values files and --set only")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
}

func recipeArg(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return []string{"star"}, cobra.ShellCompDirectiveFilterFileExt
}

func newRunCmd() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "run RECIPE",
		Short: "Plan and apply a recipe: build the lab",
		Long: `run evaluates the recipe, prints the plan, and applies it: independent steps
in parallel, each recorded in the workdir's state as it lands. Running again
changes nothing. With --dry-run it only prints the plan and changes nothing at
all, not even the workdir.`,
		Example: `  khw run recipes/hardway.star
  khw run --dry-run recipes/hardway.star
  khw run recipes/hardway.star --values lab.values    # KEY=VALUE lines
  khw run recipes/hardway.star --reset-params         # forget the recorded parameters
  khw run recipes/hardway.star --workdir /tmp/lab --target pki --target kubeconfig
  khw run recipes/hardway.star --set hypervisor=docker`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: recipeArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.execute(cmd, args[0])
		},
	}
	o.flags(cmd)
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVar(&o.detailed, "detailed-exitcode", false, "with --dry-run: exit 0 when nothing would change, 2 when something would, 1 on error")
	return cmd
}

func newPlanCmd() *cobra.Command {
	o := &options{dryRun: true, listParams: true}
	cmd := &cobra.Command{
		Use:   "plan RECIPE",
		Short: "Show what run would do, changing nothing",
		Long: `plan evaluates the recipe, lists its parameters (each one's value, where
the value came from, and its doc), reads the real world back and prints
what run would change. It changes nothing, not even the workdir.

A parameter's value comes from, strongest first: --set, --values files (in
order, the last wins), the recipe directory's ` + runtime.ValuesFile + ` file, the
values the last run in this workdir recorded, and the recipe's default.`,
		Example: `  khw plan recipes/hardway.star
  khw plan --detailed-exitcode recipes/hardway.star; echo $?   # 0 no changes, 2 changes, 1 error
  khw plan -o json recipes/hardway.star | jq '.counts'    # schema: docs/output.md`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: recipeArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.execute(cmd, args[0])
		},
	}
	o.flags(cmd)
	cmd.Flags().BoolVar(&o.detailed, "detailed-exitcode", false, "exit 0 when nothing would change, 2 when something would, 1 on error")
	return cmd
}

func newDestroyCmd() *cobra.Command {
	o := &options{destroy: true}
	cmd := &cobra.Command{
		Use:   "destroy RECIPE",
		Short: "Take down everything khw made for a recipe",
		Long: `destroy deletes every resource recorded in the workdir's state, dependents
first: files copied to nodes, VMs, the load balancer, rules, the bridge, and
the generated files. With --target, only matching resources and whatever
depends on them.`,
		Example: `  khw destroy recipes/hardway.star
  khw destroy --dry-run recipes/hardway.star
  khw destroy recipes/hardway.star --target vm.n2`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: recipeArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.execute(cmd, args[0])
		},
	}
	o.flags(cmd)
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "print what would be destroyed and change nothing")
	return cmd
}

func (o *options) execute(cmd *cobra.Command, recipeFile string) error {
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("--output %q: use text or json", o.output)
	}
	if o.detailed && !o.dryRun {
		return errors.New("--detailed-exitcode goes with --dry-run (or use khw plan)")
	}
	out := cmd.OutOrStdout()
	reg := all.Registry()
	workdir, err := filepath.Abs(o.workdir)
	if err != nil {
		return err
	}
	store, err := runtime.OpenStore(workdir)
	if err != nil {
		return err
	}
	recorded := store.Params()
	if o.resetParams {
		recorded = nil
	}
	recipe, err := o.evaluate(cmd, reg, recipeFile, recorded)
	if err != nil {
		return err
	}
	if !o.dryRun {
		if err := store.Lock(); err != nil {
			return err
		}
		defer store.Unlock()
		if !o.resetParams && !maps.Equal(store.Params(), recorded) {
			return fmt.Errorf("another khw run changed %s's recorded parameters while this one read the recipe: run again", workdir)
		}
	}
	if o.output == "text" {
		printParams(out, recipe, store.Params(), workdir, o.listParams)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	host := pluginhost.New(reg.InProcess())
	// Each plugin's schema is checked against the builtins' declarations
	// when the run first uses it (runtime/schema.go says why not all at
	// start-up).
	host.Check = reg.CheckSchema
	defer host.Close()

	planner := &runtime.Planner{Providers: host, Workdir: workdir, Refresh: o.refresh, Targets: o.targets}
	var plan *runtime.Plan
	if o.destroy {
		plan, err = planner.PlanDestroy(store)
	} else {
		plan, err = planner.Plan(ctx, recipe, store)
	}
	if err != nil {
		return err
	}

	if o.output == "json" {
		if err := runtime.WritePlanJSON(out, plan, paramsJSON(recipe, store.Params())); err != nil {
			return err
		}
	} else {
		runtime.PrintPlan(out, plan)
	}
	if o.dryRun {
		if o.detailed && plan.HasChanges() {
			return &exitError{code: 2}
		}
		return nil
	}
	// The parameters this lab is made with, recorded before anything is
	// changed: a run killed half-way has made its resources with them. A
	// whole destroy forgets them once it is done; the next lab starts from
	// the defaults.
	if !o.destroy {
		if err := store.SetParams(givenParams(recipe)); err != nil {
			return err
		}
	}
	forget := o.destroy && len(o.targets) == 0
	if !plan.HasChanges() {
		if forget {
			return store.SetParams(nil)
		}
		return nil
	}

	disp := newDisplay(out, cmd.ErrOrStderr(), o.output)
	ex := &runtime.Executor{Providers: host, Workdir: workdir, Store: store, Parallelism: o.parallelism, OnEvent: disp.Event}
	if o.output == "text" {
		fmt.Fprintln(out)
	}
	applyErr := ex.Apply(ctx, plan)
	disp.Close()
	if forget && applyErr == nil {
		applyErr = store.SetParams(nil)
	}
	// The state's journal, folded into state.json: complete after a run.
	if err := store.Compact(); err != nil && applyErr == nil {
		applyErr = fmt.Errorf("saving the state: %w", err)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "khw", Level: pluginhost.LogLevel(), Output: os.Stderr})
	log.Debug("state written", "bytes", store.Written(), "resources", len(store.Addrs()))
	if keys, cpu := pki.KeyWork(); keys > 0 {
		log.Debug("keys generated", "keys", keys, "cpu_ns", cpu.Nanoseconds())
	}
	add, change, destroy := plan.Counts()
	if applyErr != nil {
		if o.output == "json" {
			_ = json.NewEncoder(out).Encode(map[string]any{"event": "run_failed", "error": applyErr.Error()})
		}
		return &hintError{err: applyErr, hint: fmt.Sprintf("What finished is recorded in %s; fix the cause and run again to finish the job.", filepath.Join(workdir, runtime.StateDir))}
	}
	if o.output == "json" {
		return json.NewEncoder(out).Encode(map[string]any{"event": "run_complete", "counts": map[string]int{"add": add, "change": change, "destroy": destroy}})
	}
	if o.destroy {
		fmt.Fprintf(out, "\nDestroy complete! Resources: %d destroyed.\n", destroy)
	} else {
		fmt.Fprintf(out, "\nApply complete! Resources: %d added, %d changed, %d destroyed.\n", add, change, destroy)
	}
	return nil
}

// hintError is an error followed by what to do about it.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() + "\n\n" + e.hint }
func (e *hintError) Unwrap() error { return e.err }

func newDisplay(w, errw io.Writer, output string) display {
	if output == "json" {
		return &jsonDisplay{enc: json.NewEncoder(w)}
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return newTTYDisplay(w)
	}
	return &plainDisplay{w: w, errw: errw}
}
