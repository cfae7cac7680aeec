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

func evalErr(t *testing.T, e *env, src string, params map[string]string) error {
	t.Helper()
	_, err := e.reg.Evaluate(e.write("main.star", src), runtime.Options{Params: params})
	return err
}

func TestLoadStaysInsideTheRoot(t *testing.T) {
	e := newEnv(t)
	e.write("lib/ok.star", `x = 1`)
	outside := filepath.Join(filepath.Dir(e.dir), "outside.star")
	_ = os.WriteFile(outside, []byte("x = 2"), 0o644)
	_ = os.Symlink(outside, filepath.Join(e.dir, "lib", "link.star"))
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
		err := evalErr(t, e, src, nil)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: err = %v, want %q", src, err, want)
		}
		if want != "" && err != nil && !strings.Contains(err.Error(), "main.star:1:") {
			t.Errorf("%s: no position in %v", src, err)
		}
	}
}

func TestLoadCycleIsAnError(t *testing.T) {
	e := newEnv(t)
	e.write("a.star", `load("b.star", "y")`+"\nx = 1")
	e.write("b.star", `load("a.star", "x")`+"\ny = 1")
	if err := evalErr(t, e, `load("a.star", "x")`, nil); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("err = %v", err)
	}
}

func TestALoopThatNeverEndsIsAnError(t *testing.T) {
	e := newEnv(t)
	e.write("lib/spin.star", "def spin():\n    for i in range(1 << 62):\n        pass\n")
	for _, src := range []string{
		"for i in range(1 << 62):\n    pass\n",
		"load(\"lib/spin.star\", \"spin\")\nspin()\n",
	} {
		_, err := e.reg.Evaluate(filepath.Join(e.dir, "main.star"), runtime.Options{Source: []byte(src), MaxSteps: 10000})
		if err == nil || !strings.Contains(err.Error(), "main.star:") || !strings.Contains(err.Error(), "the recipe took more than 10000 steps") {
			t.Errorf("%q: err = %v", src, err)
		}
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
	rec, err := e.reg.Evaluate(e.write("main.star", src), runtime.Options{Params: map[string]string{
		"n": "3", "b": "true", "s": "y", "l": "p,q", "li": "4,5"}})
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
		if err := evalErr(t, e, src, map[string]string{k: v}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v", params, err)
		}
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
	got := strings.ReplaceAll(buf.String(), e.dir+"/", "")
	file := "testdata/plan.golden"
	if *update {
		_ = os.WriteFile(file, []byte(got), 0o644)
	}
	want, _ := os.ReadFile(file)
	if got != string(want) {
		t.Fatalf("plan differs from %s:\n%s", file, got)
	}
}
