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

// PlanJSONVersion is the version of PlanJSON's schema (docs/output.md):
// a new field leaves it, a field renamed or removed raises it.
const PlanJSONVersion = 1

// PlanJSON is the plan for machines (-o json). Its schema is khw's own,
// documented in docs/output.md; it does not imitate Terraform's.
type PlanJSON struct {
	Version    int            `json:"khw_plan_version"`
	Parameters []ParamJSON    `json:"parameters,omitempty"`
	Changes    []ChangeJSON   `json:"changes"`
	Counts     map[string]int `json:"counts"`
	Warnings   []string       `json:"warnings,omitempty"`
}

// ParamJSON is one recipe parameter of PlanJSON.
type ParamJSON struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
	// From is "default", "--set", FILE:LINE of a values file, or
	// "recorded" (the workdir's last run).
	From string `json:"from"`
	// Recorded is the value the last run recorded, when there is one.
	Recorded *string `json:"recorded,omitempty"`
	Doc      string  `json:"doc,omitempty"`
}

// ChangeJSON is one resource of PlanJSON.
type ChangeJSON struct {
	Address  string            `json:"address"`
	Type     string            `json:"type"`
	Action   Action            `json:"action"`
	Provider string            `json:"provider"`
	Pos      string            `json:"position,omitempty"`
	Reasons  []string          `json:"reasons,omitempty"`
	Diff     []string          `json:"diff,omitempty"`
	Show     map[string]string `json:"inputs,omitempty"`
	Deps     []string          `json:"depends_on,omitempty"`
}

// WritePlanJSON writes the plan, and the recipe's parameters, as one JSON
// document.
func WritePlanJSON(w io.Writer, p *Plan, params []ParamJSON) error {
	add, change, destroy := p.Counts()
	out := PlanJSON{Version: PlanJSONVersion, Parameters: params, Changes: []ChangeJSON{},
		Counts: map[string]int{"add": add, "change": change, "destroy": destroy}, Warnings: p.Warnings}
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
