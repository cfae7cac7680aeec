package runtime

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

var symbols = map[Action]string{Create: "+", Update: "~", Replace: "-/+", Delete: "-"}

var verbs = map[Action]string{
	Create: "will be created", Update: "will be updated in place",
	Replace: "must be replaced", Delete: "will be destroyed",
}

// PrintPlan writes the plan in Terraform's vocabulary. Only inputs are
// shown, and inputs never hold a secret.
func PrintPlan(w io.Writer, p *Plan) {
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "Warning: %s\n", warn)
	}
	if !p.HasChanges() {
		fmt.Fprintln(w, "No changes. The lab matches the recipe.")
		return
	}
	fmt.Fprintln(w, "khw will perform the following actions:")
	for _, c := range p.Changes {
		if c.Action == NoOp {
			continue
		}
		fmt.Fprintln(w)
		head := fmt.Sprintf("  # %s %s", c.Addr, verbs[c.Action])
		if len(c.Reasons) > 0 && c.Action != Create {
			head += " (" + strings.Join(c.Reasons, "; ") + ")"
		}
		fmt.Fprintln(w, head)
		where := c.Where()
		if where != "" {
			where = "  " + where
		}
		fmt.Fprintf(w, "%4s %s%s\n", symbols[c.Action], c.Addr, where)
		if c.Res != nil {
			width := 0
			for _, f := range c.Res.Show {
				width = max(width, len(f.Key))
			}
			for _, f := range c.Res.Show {
				fmt.Fprintf(w, "        %-*s = %s\n", width, f.Key, f.Value)
			}
		}
		for _, d := range c.Diff {
			fmt.Fprintf(w, "        ~ %s\n", d)
		}
	}
	add, change, destroy := p.Counts()
	fmt.Fprintf(w, "\nPlan: %d to add, %d to change, %d to destroy.\n", add, change, destroy)
}

// PlanJSON is the plan for machines (--output json).
type PlanJSON struct {
	FormatVersion string         `json:"format_version"`
	Changes       []ChangeJSON   `json:"resource_changes"`
	Summary       map[string]int `json:"summary"`
	Warnings      []string       `json:"warnings,omitempty"`
}

// ChangeJSON is one resource of PlanJSON.
type ChangeJSON struct {
	Address  string            `json:"address"`
	Type     string            `json:"type"`
	Action   Action            `json:"action"`
	Provider string            `json:"provider"`
	Pos      string            `json:"pos,omitempty"`
	Reasons  []string          `json:"reasons,omitempty"`
	Diff     []string          `json:"diff,omitempty"`
	Show     map[string]string `json:"show,omitempty"`
	Deps     []string          `json:"depends_on,omitempty"`
}

// WritePlanJSON writes the plan as one JSON document.
func WritePlanJSON(w io.Writer, p *Plan) error {
	add, change, destroy := p.Counts()
	out := PlanJSON{FormatVersion: "1", Summary: map[string]int{"add": add, "change": change, "destroy": destroy}, Warnings: p.Warnings}
	for _, c := range p.Changes {
		cj := ChangeJSON{Address: c.Addr, Type: c.Type(), Action: c.Action, Provider: c.Provider(), Pos: c.Where(), Reasons: c.Reasons, Diff: c.Diff}
		if c.Res != nil {
			cj.Deps = c.Res.Deps
			if len(c.Res.Show) > 0 {
				cj.Show = map[string]string{}
				for _, f := range c.Res.Show {
					cj.Show[f.Key] = f.Value
				}
			}
		}
		out.Changes = append(out.Changes, cj)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
