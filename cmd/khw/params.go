package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/internal/starconv"
	"github.com/khw-dev/khw/runtime"
)

// Where a parameter's value comes from, strongest first: --set, the
// --values files (the last wins), the recipe directory's khw.values, the
// parameters the workdir's last run recorded, the recipe's default. The
// recorded layer is what makes `khw run --set hypervisor=docker` followed
// by a plain `khw plan` say "No changes." instead of planning every node
// away, as Terraform's variable files do for its users; the values files
// are for a lab's settings that should not have to be typed each time.

// evaluate runs the recipe with its parameters from every layer; its
// print() output goes to stderr. recorded are the workdir's recorded
// parameters (nil for commands without a workdir).
func (o *options) evaluate(cmd *cobra.Command, reg *runtime.Registry, recipeFile string, recorded map[string]string) (*runtime.Recipe, error) {
	sets := map[string]string{}
	for _, s := range o.sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--set %q: want KEY=VALUE", s)
		}
		sets[k] = v
	}
	values := map[string]runtime.Value{}
	for k, v := range recorded {
		values[k] = runtime.Value{Raw: v, From: "recorded"}
	}
	files := o.valueFiles
	auto := filepath.Join(filepath.Dir(recipeFile), runtime.ValuesFile)
	if _, err := os.Stat(auto); err == nil {
		files = append([]string{auto}, files...)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	fromFiles := map[string]bool{}
	for _, f := range files {
		vs, err := runtime.ReadValues(f)
		if err != nil {
			return nil, fmt.Errorf("values file: %w", err)
		}
		for k, v := range vs {
			values[k], fromFiles[k] = v, true
		}
	}
	rec, err := reg.Evaluate(recipeFile, runtime.Options{Root: o.root, Params: sets, Values: values, Print: cmd.ErrOrStderr()})
	if err != nil {
		return nil, err
	}
	// A values file may serve several recipes: a name this one does not
	// declare is a warning, not an error (a mistyped --set is an error).
	// A recorded name the recipe no longer declares is dropped.
	for _, k := range rec.Unused {
		if fromFiles[k] {
			fmt.Fprintf(cmd.ErrOrStderr(), "Warning: %s: %s declares no parameter %s; it is not used\n", values[k].From, recipeFile, k)
		}
	}
	return rec, nil
}

// givenParams are the parameters to record: every one given a value
// (--set, a values file, recorded), as text. Defaults are not recorded, so
// a recipe's new default reaches a lab that never set the parameter.
func givenParams(rec *runtime.Recipe) map[string]string {
	out := map[string]string{}
	for _, p := range rec.Params {
		if p.Set {
			out[p.Name] = p.Raw
		}
	}
	return out
}

// printParams says which recorded parameters a run uses and which values
// differ from the recorded ones; with all, it lists every parameter (khw
// plan).
func printParams(w io.Writer, rec *runtime.Recipe, recorded map[string]string, workdir string, all bool) {
	var used, changed []string
	for _, p := range rec.Params {
		old, had := recorded[p.Name]
		switch {
		case p.From == "recorded":
			used = append(used, p.Name+"="+p.Raw)
		case had && (!p.Set || p.Raw != old):
			now := p.Raw
			if !p.Set {
				now = showValue(p.Value) + " (the default)"
			}
			changed = append(changed, fmt.Sprintf("  %s: %s -> %s", p.Name, old, now))
		}
	}
	if all {
		fmt.Fprintf(w, "Parameters of %s (set with --set NAME=VALUE or a values file):\n", rec.File)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, p := range rec.Params {
			fmt.Fprintf(tw, "  %s\t= %s\t%s\t%s\n", p.Name, showValue(p.Value), p.From, p.Doc)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	if len(used) > 0 {
		sort.Strings(used)
		fmt.Fprintf(w, "Using the parameters the last run recorded in %s: %s\n(--set NAME=VALUE changes one; --reset-params forgets them all.)\n\n",
			filepath.Join(workdir, runtime.StateDir, "state.json"), strings.Join(used, ", "))
	}
	if len(changed) > 0 {
		fmt.Fprintf(w, "Parameters changed since the last run (recorded when this run applies):\n%s\n\n", strings.Join(changed, "\n"))
	}
}

// showValue is a parameter's value as a user would type it.
func showValue(v starlark.Value) string {
	if s, ok := starlark.AsString(v); ok {
		return fmt.Sprintf("%q", s)
	}
	return v.String()
}

// paramsJSON is the recipe's parameters for -o json (docs/output.md).
func paramsJSON(rec *runtime.Recipe, recorded map[string]string) []runtime.ParamJSON {
	var out []runtime.ParamJSON
	for _, p := range rec.Params {
		// A parameter's value is an int, a bool, a string or a list of
		// them (convertParam), which ToGo always converts.
		v, _ := starconv.ToGo(p.Value)
		pj := runtime.ParamJSON{Name: p.Name, Value: v, From: p.From, Doc: p.Doc}
		if old, ok := recorded[p.Name]; ok {
			pj.Recorded = &old
		}
		out = append(out, pj)
	}
	return out
}
