package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/internal/atomicfile"
	"github.com/khw-dev/khw/runtime"
)

// The README's reference section lies between these lines; everything
// between them is `khw docs` output.
const (
	docsBegin = "<!-- BEGIN khw docs -->"
	docsEnd   = "<!-- END khw docs -->"
)

func newDocsCmd() *cobra.Command {
	var format, readme string
	var check bool
	cmd := &cobra.Command{
		Use:   "docs [BUILTIN|MODULE ...]",
		Short: "Print the reference of every builtin a recipe can call",
		Long: `docs prints the reference of the builtins recipes call: each one's signature,
arguments (type, default, meaning), the resource it declares and who serves
it, and an example. It is made from the same metadata that registers the
builtins, so it always matches this khw. Name builtins (pki.cert) or modules
(pki) to see only those.

With --readme FILE, docs replaces the part of FILE between the lines
` + docsBegin + ` and ` + docsEnd + ` with the markdown reference
(make docs does this for README.md); with --check as well, it changes
nothing and fails when FILE is out of date.`,
		Example: `  khw docs                          # markdown, every builtin
  khw docs -o text pki        # the pki module, for a terminal
  khw docs -o text vm.create
  khw docs --readme README.md       # refresh README.md's reference (make docs)
  khw docs --readme README.md --check`,
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			var names []string
			for _, b := range all.Registry().Builtins() {
				names = append(names, b.FullName())
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if readme != "" {
				if len(args) > 0 || format != "markdown" {
					return errors.New("--readme takes the whole markdown reference: give no BUILTIN and no -o")
				}
				return updateReadme(cmd, readme, check)
			}
			if check {
				return errors.New("--check goes with --readme FILE")
			}
			bs, err := selectBuiltins(args)
			if err != nil {
				return err
			}
			return runtime.WriteReference(cmd.OutOrStdout(), bs, format)
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", "markdown", "output format: "+strings.Join(runtime.ReferenceFormats, " or "))
	cmd.Flags().StringVar(&format, "format", "markdown", "")
	_ = cmd.Flags().MarkDeprecated("format", "use -o/--output")
	cmd.Flags().StringVar(&readme, "readme", "", "rewrite the reference section of `FILE` in place")
	cmd.Flags().BoolVar(&check, "check", false, "with --readme: change nothing, fail if FILE is out of date")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(runtime.ReferenceFormats, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// selectBuiltins returns the builtins named (full names or modules), in
// reference order; every builtin when none is named.
func selectBuiltins(names []string) ([]*runtime.Builtin, error) {
	bs := runtime.ReferenceOrder(all.Registry().Builtins())
	if len(names) == 0 {
		return bs, nil
	}
	var out []*runtime.Builtin
	for _, n := range names {
		found := false
		for _, b := range bs {
			if b.FullName() == n || b.Module == n {
				out = append(out, b)
				found = true
			}
		}
		if !found {
			var known []string
			for _, b := range bs {
				known = append(known, b.FullName())
			}
			return nil, fmt.Errorf("no builtin or module %q; there are: %s", n, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// referenceMarkdown is the README's reference section: every builtin.
func referenceMarkdown() string {
	var b bytes.Buffer
	_ = runtime.WriteReference(&b, runtime.ReferenceOrder(all.Registry().Builtins()), "markdown")
	return b.String()
}

// splitReadme cuts a README around its reference section: before ends with
// the BEGIN line, after starts with the END line.
func splitReadme(file, text string) (before, section, after string, err error) {
	i := strings.Index(text, docsBegin+"\n")
	j := strings.Index(text, docsEnd)
	if i < 0 || j < 0 || j < i || strings.Count(text, docsBegin) != 1 || strings.Count(text, docsEnd) != 1 {
		return "", "", "", fmt.Errorf("%s: want exactly one line %q followed by one line %q around the builtin reference", file, docsBegin, docsEnd)
	}
	i += len(docsBegin) + 1
	return text[:i], text[i:j], text[j:], nil
}

func updateReadme(cmd *cobra.Command, file string, check bool) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	before, section, after, err := splitReadme(file, string(raw))
	if err != nil {
		return err
	}
	want := referenceMarkdown()
	switch {
	case section == want:
		fmt.Fprintf(cmd.OutOrStdout(), "%s: the builtin reference is up to date\n", file)
		return nil
	case check:
		return fmt.Errorf("%s: the builtin reference is out of date: run `make docs` (khw docs --readme %s)", file, file)
	}
	info, err := os.Stat(file)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(file, []byte(before+want+after), info.Mode().Perm()); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: builtin reference rewritten\n", file)
	return nil
}
