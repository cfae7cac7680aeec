package runtime_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/khw-dev/khw/runtime"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestLoadStaysInsideTheRoot(t *testing.T) {
	e := newEnv(t)
	e.File("lib/ok.star", `x = 1`)
	outside := filepath.Join(filepath.Dir(e.Root()), "outside.star")
	_ = os.WriteFile(outside, []byte("x = 2"), 0o644)
	_ = os.Symlink(outside, e.Path("lib/link.star"))
	for src, want := range map[string]string{
		`load("lib/ok.star", "x")`:             "",
		`load("../outside.star", "x")`:         `load() "../outside.star" is outside the recipe root`,
		`load("lib/../../outside.star", "x")`:  "is outside the recipe root",
		`load("/etc/passwd", "x")`:             "is outside the recipe root",
		`load("lib/link.star", "x")`:           "through a symlink",
		`load("lib/missing.star", "x")`:        "no such file in the recipe root",
		`x = time.now()`:                       "undefined: time",
		`x = fake.thing("a", "1", colour = 1)`: `unexpected keyword argument "colour"`,
	} {
		e.File("main.star", src)
		if want != "" {
			e.AssertError("main.star", nil, "main.star:1", want)
		} else if _, err := e.Eval("main.star", nil); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
}

func TestLoadCycleIsAnError(t *testing.T) {
	e := newEnv(t)
	e.File("a.star", `load("b.star", "y")`+"\nx = 1")
	e.File("b.star", `load("a.star", "x")`+"\ny = 1")
	e.File("main.star", `load("a.star", "x")`)
	e.AssertError("main.star", nil, "", "cycle")
}

func TestALoopThatNeverEndsIsAnError(t *testing.T) {
	e := newEnv(t)
	e.File("lib/spin.star", "def spin():\n    for i in range(1 << 62):\n        pass\n")
	e.MaxSteps = 10000
	for _, src := range []string{
		"for i in range(1 << 62):\n    pass\n",
		"load(\"lib/spin.star\", \"spin\")\nspin()\n",
	} {
		_, err := e.EvalSource("main.star", src, nil)
		e.CheckError(err, "", "main.star:", "the recipe took more than 10000 steps")
	}
}

func TestParams(t *testing.T) {
	e := newEnv(t)
	src := `
n = param("n", 2)
b = param("b", False)
s = param("s", "x")
l = param("l", ["a"])
li = param("li", [1])
fake.thing("t", "%d %s %s %s %s" % (n, b, s, l, li))
`
	e.File("main.star", src)
	rec, err := e.Eval("main.star", map[string]string{"n": "3", "b": "true", "s": "y", "l": "p,q", "li": "4,5"})
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.Resources[0].Inputs["value"]; got != `3 True y ["p", "q"] [4, 5]` {
		t.Fatalf("value = %v", got)
	}
	for params, want := range map[string]string{
		"n=abc":   "--set n=abc: parameter takes a whole number",
		"b=maybe": "--set b=maybe: parameter takes true or false",
		"li=x":    "comma-separated list of whole numbers",
		"zz=1":    "--set zz: ",
	} {
		k, v, _ := strings.Cut(params, "=")
		e.AssertError("main.star", map[string]string{k: v}, "", want)
	}
}

func TestPlanTextGolden(t *testing.T) {
	e := newEnv(t)
	if err := e.apply(e.plan(chain)); err != nil {
		t.Fatal(err)
	}
	p := e.plan(strings.Replace(chain, `fake.thing("a", "1")`, `fake.thing("a", "2")`, 1) + "\nfake.thing(\"e\", \"new\")\n")
	var buf bytes.Buffer
	runtime.PrintPlan(&buf, p)
	got := strings.ReplaceAll(buf.String(), e.Root()+"/", "")
	file := "testdata/plan.golden"
	if *update {
		_ = os.WriteFile(file, []byte(got), 0o644)
	}
	want, _ := os.ReadFile(file)
	if got != string(want) {
		t.Fatalf("plan differs from %s:\n%s", file, got)
	}
}
