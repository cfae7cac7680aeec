package main

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"go.starlark.net/starlark"

	"github.com/khw-dev/khw/builtins/all"
	"github.com/khw-dev/khw/internal/atomicfile"
	"github.com/khw-dev/khw/runtime"
)

var graphFormats = []string{"dot", "svg", "png"}

func newGraphCmd() *cobra.Command {
	o := &options{}
	var file, format string
	cmd := &cobra.Command{
		Use:   "graph RECIPE",
		Short: "Draw the lab a recipe declares, as a Graphviz graph",
		Long: `graph evaluates the recipe (nothing is started, read or changed: no plugins,
no workdir) and prints its resources as a Graphviz DOT graph: one box per
resource, grouped as the post is (host network, PKI, kubeconfigs,
encryption config, then the nodes and the load balancer, each node in a box
with the copies that go to it), and an arrow for each dependency, from what
is made first to what uses it. A copy points at the node it copies to, so
one reads file -> copy -> node. Only names, files and addresses are drawn,
never key material.

-o svg or png (or --out FILE.svg, FILE.png) renders the graph with
Graphviz's dot, which must be on PATH (Debian/Ubuntu: apt-get install
graphviz). As in every khw command, -o is the output format.`,
		Example: `  khw graph recipes/hardway.star > lab.dot
  khw graph recipes/hardway.star --out lab.svg      # needs graphviz's dot
  khw graph recipes/hardway.star -o png --out docs/lab.png
  khw graph recipes/hardway.star --set hypervisor=none | dot -Tpdf > lab.pdf`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: recipeArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := graphFormat(format, file)
			if err != nil {
				return err
			}
			rec, err := o.evaluate(cmd, all.Registry(), args[0], nil)
			if err != nil {
				return err
			}
			var dot bytes.Buffer
			writeDOT(&dot, rec)
			out := dot.Bytes()
			if format != "dot" {
				if out, err = renderDOT(out, format); err != nil {
					return err
				}
			}
			if file == "" || file == "-" {
				_, err = cmd.OutOrStdout().Write(out)
				return err
			}
			return atomicfile.WriteFile(file, out, 0o644)
		},
	}
	o.recipeFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&file, "out", "", "write to `FILE` instead of stdout; .svg and .png also choose the format")
	f.StringVarP(&format, "output", "o", "", "output format: dot, svg or png (default: from --out's extension, else dot)")
	// --format was -o's name before -o meant the format in every command.
	f.StringVar(&format, "format", "", "")
	_ = f.MarkDeprecated("format", "use -o/--output")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(graphFormats, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// graphFormat is the format asked for, or the one --out's extension implies.
func graphFormat(format, file string) (string, error) {
	if format == "" {
		switch strings.ToLower(filepath.Ext(file)) {
		case ".svg":
			return "svg", nil
		case ".png":
			return "png", nil
		}
		return "dot", nil
	}
	for _, f := range graphFormats {
		if format == f {
			return f, nil
		}
	}
	return "", fmt.Errorf("-o %q: use %s", format, strings.Join(graphFormats, ", "))
}

// renderDOT runs Graphviz's dot to turn a DOT graph into svg or png.
func renderDOT(src []byte, format string) ([]byte, error) {
	dot, err := exec.LookPath("dot")
	if err != nil {
		return nil, fmt.Errorf("-o %s needs Graphviz's dot, which is not on PATH: install the graphviz package "+
			"(Debian/Ubuntu: apt-get install graphviz), or print DOT (-o dot) and render it elsewhere", format)
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command(dot, "-T"+format)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(src), &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s -T%s: %v\n%s", dot, format, err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

// ---- the DOT graph ----

// cluster is one box of the drawing: the resource types it holds (a type,
// or a module such as "pki" for every pki.* type) and its colours.
type cluster struct {
	id, label   string
	types       []string
	fill, color string
}

// clusters are the drawing's groups, in the order the post builds the lab.
// Each node (vm, node.host) gets a box of its own inside "nodes", holding
// the copies and commands that go to it. A type no cluster names goes to
// "other".
var clusters = []cluster{
	{id: "hostnet", label: "host network", types: []string{"net", "docker.network"}, fill: "#eaf2fb", color: "#4a7ab5"},
	{id: "pki", label: "PKI: keys, CA, certificates", types: []string{"pki"}, fill: "#fdf3e1", color: "#c08a2b"},
	{id: "kubeconfig", label: "kubeconfigs", types: []string{"kubeconfig"}, fill: "#eef7ea", color: "#5b9a4a"},
	{id: "encryption", label: "encryption config", types: []string{"encryption"}, fill: "#f6ecf8", color: "#9a5bb0"},
	{id: "nodes", label: "nodes, the load balancer, and what is copied to each node", types: []string{"vm", "node", "lb", "ssh"}, fill: "#fbeaea", color: "#b54a4a"},
	{id: "other", label: "other", fill: "#ffffff", color: "#999999"},
}

func clusterOf(typ string) *cluster {
	for i := range clusters {
		for _, t := range clusters[i].types {
			if typ == t || strings.HasPrefix(typ, t+".") {
				return &clusters[i]
			}
		}
	}
	return &clusters[len(clusters)-1]
}

// isNode is true for the resources copies and commands go to.
func isNode(typ string) bool { return typ == "vm" || typ == "node.host" }

// goesTo is true for resources that act on a node (copies, commands).
func goesTo(typ string) bool { return typ == "node.copy" || typ == "node.run" }

// nodeOf is the node a resource belongs to in the drawing: a node itself,
// or the node a copy or command goes to; "" for the others.
func nodeOf(rec *runtime.Recipe, r *runtime.Resource) string {
	if isNode(r.Type) {
		return r.Addr()
	}
	if goesTo(r.Type) {
		for _, d := range r.Deps {
			if isNode(rec.Resource(d).Type) {
				return d
			}
		}
	}
	return ""
}

// writeDOT draws the recipe's resources. The output depends only on the
// recipe: clusters in a fixed order, resources and edges in declaration
// order.
func writeDOT(w io.Writer, rec *runtime.Recipe) {
	title := rec.File
	var sets []string
	for _, p := range rec.Params {
		if p.Set {
			v := p.Value.String()
			if s, ok := starlark.AsString(p.Value); ok {
				v = s
			}
			sets = append(sets, p.Name+"="+v)
		}
	}
	if len(sets) > 0 {
		title += " (" + strings.Join(sets, ", ") + ")"
	}
	fmt.Fprintf(w, "// khw graph %s: %d resources. Render: dot -Tsvg\n", title, len(rec.Resources))
	fmt.Fprintln(w, "digraph khw {")
	fmt.Fprintf(w, "  graph [rankdir=LR, concentrate=true, nodesep=0.12, ranksep=0.9, fontname=\"Helvetica\", fontsize=16, labelloc=t, label=%s];\n",
		quote(title+"\nan arrow goes from what is made first to what uses it; a red arrow from a copy to the node it copies to"))
	fmt.Fprintln(w, `  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica", fontsize=11, margin="0.08,0.03"];`)
	fmt.Fprintln(w, `  edge [color="#00000066", arrowsize=0.6];`)

	members := map[string][]*runtime.Resource{}
	var nodes []string
	perNode := map[string][]*runtime.Resource{}
	for _, r := range rec.Resources {
		if n := nodeOf(rec, r); n != "" {
			if perNode[n] == nil {
				nodes = append(nodes, n)
			}
			perNode[n] = append(perNode[n], r)
			continue
		}
		c := clusterOf(r.Type)
		members[c.id] = append(members[c.id], r)
	}
	for _, c := range clusters {
		rs := members[c.id]
		if len(rs) == 0 && (c.id != "nodes" || len(nodes) == 0) {
			continue
		}
		fmt.Fprintf(w, "\n  subgraph cluster_%s {\n", c.id)
		fmt.Fprintf(w, "    label=%s; style=\"rounded,filled\"; fillcolor=%s; color=%s; fontcolor=%s;\n",
			quote(c.label), quote(c.fill), quote(c.color), quote(c.color))
		for _, r := range rs {
			fmt.Fprintf(w, "    %s;\n", nodeStmt(r, c))
		}
		if c.id == "nodes" {
			for i, n := range nodes {
				fmt.Fprintf(w, "    subgraph cluster_node_%d {\n", i)
				fmt.Fprintf(w, "      label=%s; style=\"rounded,filled\"; fillcolor=white; color=%s;\n", quote(rec.Resource(n).Name), quote(c.color))
				for _, r := range perNode[n] {
					fmt.Fprintf(w, "      %s;\n", nodeStmt(r, c))
				}
				fmt.Fprintln(w, "    }")
			}
		}
		fmt.Fprintln(w, "  }")
	}

	fmt.Fprintln(w)
	for _, r := range rec.Resources {
		for _, d := range r.Deps {
			if goesTo(r.Type) && d == nodeOf(rec, r) {
				// file -> copy -> node: the node is made first, but the
				// arrow shows where the files go.
				fmt.Fprintf(w, "  %s -> %s [color=%s, penwidth=1.6];\n", quote(r.Addr()), quote(d), quote(clusterOf("vm").color))
				continue
			}
			fmt.Fprintf(w, "  %s -> %s;\n", quote(d), quote(r.Addr()))
		}
	}
	fmt.Fprintln(w, "}")
}

// nodeStmt is a resource's node: its type, its name in bold, and what a
// person looks for (an address, the files). Never a secret: inputs hold
// none, and only names and addresses are drawn.
func nodeStmt(r *runtime.Resource, c cluster) string {
	color, fill := c.color, "white"
	switch {
	case goesTo(r.Type):
		color = "#666666"
	case isNode(r.Type):
		fill = c.fill
	}
	label := fmt.Sprintf(`<font point-size="9" color="%s">%s</font><br/><b>%s</b>`, color, html.EscapeString(r.Type), html.EscapeString(r.Name))
	for _, d := range details(r) {
		label += fmt.Sprintf(`<br/><font point-size="9">%s</font>`, html.EscapeString(d))
	}
	return fmt.Sprintf("%s [label=<%s>, color=%s, fillcolor=%s, tooltip=%s]", quote(r.Addr()), label, quote(color), quote(fill), quote(r.Addr()+"  "+r.Where()))
}

// details are the few inputs drawn under a resource's name.
func details(r *runtime.Resource) []string {
	s := func(k string) string {
		v, _ := r.Inputs[k].(string)
		return v
	}
	switch r.Type {
	case "net.bridge":
		return []string{s("address")}
	case "net.nat":
		if s("external_iface") == "" {
			return []string{s("subnet") + " out of the default route"}
		}
		return []string{s("subnet") + " out of " + s("external_iface")}
	case "net.hosts":
		return []string{s("file")}
	case "docker.network":
		return []string{s("subnet")}
	case "vm":
		return []string{strings.TrimSpace(s("ip") + " " + s("role"))}
	case "node.host", "lb.nginx":
		return []string{s("ip") + s("host")}
	case "pki.key":
		return []string{s("file")}
	case "pki.ca", "pki.cert":
		return []string{r.Name + ".pem"}
	case "kubeconfig":
		return []string{r.Name + ".kubeconfig"}
	case "encryption.config":
		return []string{r.Name + ".yaml"}
	case "node.copy":
		var files []string
		list, _ := r.Inputs["files"].([]any)
		for _, f := range list {
			if m, ok := f.(map[string]any); ok {
				p, _ := m["path"].(string)
				files = append(files, path.Base(p))
			}
		}
		return files
	}
	return nil
}

// quote is a DOT string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}
