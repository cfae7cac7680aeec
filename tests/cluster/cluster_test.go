// Package cluster is the end-to-end test of the whole post (make e2e): the
// cluster that `khw run recipes/hardway.star` builds on container nodes in
// the lab's network namespace, checked the way Kubernetes The Hard Way
// checks it (its smoke tests, unchanged), through the load balancer, then
// repaired, re-run, dry-run and destroyed.
package cluster

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/khw-dev/khw/internal/labtest"
)

var (
	root    = labtest.RepoRoot()
	workdir = "/var/lib/khw/lab"
	ips     = map[string]string{"m1": "10.200.1.10", "m2": "10.200.1.11", "m3": "10.200.1.12", "n1": "10.200.1.13", "n2": "10.200.1.14", "n3": "10.200.1.16"}
)

// containers: the lab's nodes are containers (this machine cannot run KVM
// guests, and container nodes come up in seconds).
var containers = []string{"KHW_NODES=containers"}

// lab runs scripts/lab.sh with the lab's settings.
func lab(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join(root, "scripts", "lab.sh")}, args...)...)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), containers...), "KHW_LAB_WORKDIR="+workdir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs scripts/lab.sh and fails the test when it fails.
func must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := lab(t, args...)
	if err != nil {
		t.Fatalf("lab.sh %s: %v\n%s", strings.Join(args, " "), err, labtest.Tail(out, 40))
	}
	return out
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return must(t, append([]string{"kubectl"}, args...)...)
}

// onNode runs a command as root on a node over ssh (khw ssh: the pinned
// host key, the workspace key).
func onNode(t *testing.T, node, command string) string {
	t.Helper()
	return must(t, "ssh", node, "--", "sudo sh -c "+quote(command))
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// eventually retries f until it returns "" or the time is up; the last
// complaint fails the test.
func eventually(t *testing.T, within time.Duration, what string, f func() string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(within); ; time.Sleep(2 * time.Second) {
		if last = f(); last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, within, last)
		}
	}
}

func up(t *testing.T, flags ...string) time.Duration {
	t.Helper()
	labtest.RequireRoot(t)
	_, _ = lab(t, "down")
	_ = os.RemoveAll(workdir)
	t.Cleanup(func() {
		if out, err := lab(t, "down"); err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
	})
	start := time.Now()
	out, err := lab(t, append([]string{"up"}, flags...)...)
	took := time.Since(start)
	t.Logf("lab up %v: %v\n%s", flags, took.Round(time.Second), labtest.Tail(out, 30))
	if err != nil || !strings.Contains(out, "Apply complete!") {
		t.Fatalf("lab up failed: %v", err)
	}
	return took
}

// ready checks that exactly the workers are nodes of the cluster, all Ready.
func ready(t *testing.T, workers ...string) string {
	t.Helper()
	out, err := lab(t, "kubectl", "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
	if err != nil {
		return err.Error() + ": " + out
	}
	var want []string
	for _, w := range workers {
		want = append(want, w+"=True")
	}
	got := strings.Fields(out)
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		return fmt.Sprintf("nodes %v, want %v", got, want)
	}
	return ""
}

// running waits for the pods matching a selector to be Running and
// returns their names.
func running(t *testing.T, selector string, n int) []string {
	t.Helper()
	var names []string
	eventually(t, 4*time.Minute, "pods "+selector+" Running", func() string {
		out, err := lab(t, "kubectl", "get", "pods", "-l", selector, "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}`)
		if err != nil {
			return out
		}
		names = nil
		for _, f := range strings.Fields(out) {
			name, phase, _ := strings.Cut(f, "=")
			if phase != "Running" {
				o, _ := lab(t, "kubectl", "describe", "pods", "-l", selector)
				return f + "\n" + labtest.Tail(o, 25)
			}
			names = append(names, name)
		}
		if len(names) != n {
			return fmt.Sprintf("%d pods, want %d", len(names), n)
		}
		return ""
	})
	return names
}

// startTimes are the services' start times on each node (systemd's
// monotonic clock: a restart changes it).
func startTimes(t *testing.T, nodes map[string][]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for node, units := range nodes {
		for _, u := range units {
			out[node+"/"+u] = strings.TrimSpace(onNode(t, node, "systemctl show -p ActiveEnterTimestampMonotonic --value "+u))
		}
	}
	return out
}

var (
	controlUnits = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
	workerUnits  = []string{"containerd", "kubelet", "kube-proxy", "flanneld"}
)

func units(controllers, workers []string) map[string][]string {
	out := map[string][]string{}
	for _, c := range controllers {
		out[c] = controlUnits
	}
	for _, w := range workers {
		out[w] = workerUnits
	}
	return out
}

// snapshot is what a dry run must not change: containers, the host's
// rules and links, every unit's start time, the workdir's files.
func snapshot(t *testing.T, nodes map[string][]string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"docker", "ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}}"}, {"docker", "volume", "ls", "-q"},
		{"exec", "ip", "-br", "link"}, {"exec", "ip", "-br", "-4", "addr"},
	} {
		o := must(t, args...)
		if args[0] == "docker" && args[1] == "ps" {
			// "Up 3 minutes" ages; keep whether it is up.
			o = regexp.MustCompile(`Up [^\n]*`).ReplaceAllString(o, "Up")
		}
		b.WriteString(o)
	}
	o := must(t, "exec", "iptables-save")
	for _, l := range strings.Split(o, "\n") {
		if !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, ":") {
			b.WriteString(l + "\n")
		}
	}
	st := startTimes(t, nodes)
	keys := make([]string, 0, len(st))
	for k := range st {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %s\n", k, st[k])
	}
	files, _ := labtest.Output("sh", "-c", "cd "+workdir+" && find . -type f ! -name timings.json -printf '%p %s %T@\\n' | sort")
	b.WriteString(files)
	return b.String()
}

// TestCluster is the whole post on 2 controllers and 2 workers.
func TestCluster(t *testing.T) {
	if os.Getenv("KHW_E2E") == "" {
		t.Skip("the cluster runs with KHW_E2E=1 (make e2e)")
	}
	took := up(t)
	t.Logf("from nothing to a Ready cluster: %v", took.Round(time.Second))
	controllers, workers := []string{"m1", "m2"}, []string{"n1", "n2"}
	all := units(controllers, workers)

	t.Run("control plane", func(t *testing.T) { controlPlane(t, controllers) })
	t.Run("smoke tests", func(t *testing.T) { smokeTests(t, workers) })

	t.Run("re-run changes nothing", func(t *testing.T) {
		out := must(t, "khw", "run")
		if !strings.Contains(out, "No changes.") {
			t.Fatalf("re-run:\n%s", labtest.Tail(out, 30))
		}
	})

	t.Run("a plan without the parameters uses the recorded ones", func(t *testing.T) {
		// lab.sh gives every run --set hypervisor=docker and a dozen more;
		// khw records them, so a plain khw plan uses them and says so.
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "lab.sh"), "khw", "plan")
		cmd.Dir = root
		cmd.Env = append(append(os.Environ(), containers...), "KHW_LAB_WORKDIR="+workdir, "KHW_LAB_RECORDED=1")
		b, err := cmd.CombinedOutput()
		out := string(b)
		if err != nil || !strings.Contains(out, "No changes.") {
			t.Fatalf("khw plan with no --set: %v\n%s", err, labtest.Tail(out, 30))
		}
		m := regexp.MustCompile(`Using the parameters the last run recorded in \S+: (.*)`).FindStringSubmatch(out)
		if m == nil || !strings.Contains(m[1], "hypervisor=docker") || !strings.Contains(m[1], "mirror=true") {
			t.Fatalf("the plan does not say it used the recorded hypervisor=docker:\n%s", labtest.Tail(out, 30))
		}
		t.Logf("recorded values used: %s", m[1])
	})

	t.Run("dry run changes nothing", func(t *testing.T) {
		before := snapshot(t, all)
		out := must(t, "khw", "run", "--dry-run")
		if !strings.Contains(out, "No changes.") {
			t.Errorf("dry run on the live cluster:\n%s", labtest.Tail(out, 20))
		}
		if after := snapshot(t, all); after != before {
			t.Fatalf("the dry run changed the lab:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})

	t.Run("an apiserver flag restarts kube-apiserver alone", func(t *testing.T) {
		before := startTimes(t, all)
		flag := []string{"--set", "apiserver_flags=--audit-log-maxage=7"}
		plan := must(t, append([]string{"khw", "plan"}, flag...)...)
		// A resource line is "~ ADDRESS  FILE.star:LINE"; the lines under it
		// ("~ unit: + --flag") are the text diff of its changed inputs.
		changed := regexp.MustCompile(`(?m)^\s+~ (\S+)\s+\S+\.star:\d+`).FindAllStringSubmatch(plan, -1)
		var got []string
		for _, m := range changed {
			got = append(got, m[1])
		}
		sort.Strings(got)
		if strings.Join(got, " ") != "node.service.m1-kube-apiserver node.service.m2-kube-apiserver" || !strings.Contains(plan, "0 to add, 2 to change, 0 to destroy") ||
			strings.Count(plan, "~ unit: + --audit-log-maxage=7\n") != 2 {
			t.Fatalf("plan updates %v, want the two kube-apiserver units:\n%s", got, labtest.Tail(plan, 40))
		}
		must(t, append([]string{"khw", "run"}, flag...)...)
		after := startTimes(t, all)
		for k, v := range before {
			restarted := after[k] != v
			if restarted != strings.HasSuffix(k, "/kube-apiserver") {
				t.Errorf("%s restarted: %v (start %s -> %s)", k, restarted, v, after[k])
			}
		}
		if o := onNode(t, "m1", "systemctl cat kube-apiserver"); !strings.Contains(o, "--audit-log-maxage=7") {
			t.Errorf("m1's unit lacks the flag:\n%s", o)
		}
		// The flag is recorded now: a plain run keeps it, --set takes it back.
		if out := must(t, "khw", "plan"); !strings.Contains(out, "No changes.") {
			t.Errorf("a plan after the flag's run:\n%s", labtest.Tail(out, 30))
		}
		must(t, "khw", "run", "--set", "apiserver_flags=")
	})

	t.Run("a scheduler stopped by hand is started", func(t *testing.T) {
		onNode(t, "m2", "systemctl stop kube-scheduler")
		plan := must(t, "khw", "plan")
		if !strings.Contains(plan, "node.service.m2-kube-scheduler") || !strings.Contains(plan, "kube-scheduler is not running on m2") {
			t.Fatalf("the plan does not repair the stopped scheduler:\n%s", labtest.Tail(plan, 30))
		}
		must(t, "khw", "run")
		if o := strings.TrimSpace(onNode(t, "m2", "systemctl is-active kube-scheduler")); o != "active" {
			t.Fatalf("kube-scheduler on m2 is %s after the run", o)
		}
	})

	t.Run("files edited and deleted by hand are put back, read with one command per node", func(t *testing.T) {
		// Before: the plan reads every node back with one connection and
		// one command, whatever it holds (the ssh plugin's own counts).
		t.Setenv("KHW_LOG", "debug")
		plan := must(t, "khw", "plan")
		// "read back: node=m1 resources=10 connections=1 sessions=1
		// keepalives=0 ...", its fields in any order.
		var lines []map[string]string
		for _, l := range strings.Split(plan, "\n") {
			if _, rest, ok := strings.Cut(l, "read back: "); ok {
				f := map[string]string{}
				for _, m := range regexp.MustCompile(`(\w+)=(\S+)`).FindAllStringSubmatch(rest, -1) {
					f[m[1]] = m[2]
				}
				if f["node"] != "" { // the ssh plugin's: one per node
					lines = append(lines, f)
				}
			}
		}
		if len(lines) != len(all) {
			t.Errorf("%d nodes read back, want %d:\n%s", len(lines), len(all), labtest.Tail(plan, 30))
		}
		for _, f := range lines {
			if f["connections"] != "1" || f["sessions"] != "1" || f["keepalives"] != "0" {
				t.Errorf("%s (%s resources) cost %s connections, %s sessions, %s keepalives; want 1, 1, 0", f["node"], f["resources"], f["connections"], f["sessions"], f["keepalives"])
			}
		}
		t.Setenv("KHW_LOG", "")

		onNode(t, "m1", "echo tampered >> ~veeru/ca.pem")
		onNode(t, "m2", "rm ~veeru/encryption-config.yaml")
		onNode(t, "m1", "echo '# edited by hand' >> /etc/systemd/system/kube-scheduler.service")
		plan = must(t, "khw", "plan")
		for _, want := range []string{
			"node.copy.m1-certs will be updated in place (drift: ca.pem changed on m1)",
			"node.copy.m2-encryption will be created",
			"node.service.m1-kube-scheduler will be updated in place (drift: /etc/systemd/system/kube-scheduler.service changed on m1)",
		} {
			if !strings.Contains(plan, want) {
				t.Errorf("the plan lacks %q", want)
			}
		}
		if t.Failed() || !strings.Contains(plan, "Plan: 1 to add, ") {
			t.Fatalf("the plan:\n%s", labtest.Tail(plan, 60))
		}
		must(t, "khw", "run")
		for node, file := range map[string]string{"m1": "ca.pem", "m2": "encryption-config.yaml"} {
			got := strings.Fields(onNode(t, node, "sha256sum ~veeru/"+file))
			want := strings.Fields(must(t, "exec", "sha256sum", workdir+"/"+file))
			if len(got) == 0 || len(want) == 0 || got[0] != want[0] {
				t.Errorf("%s:~/%s is %v after the run, the workdir's is %v", node, file, got, want)
			}
		}
		if o := onNode(t, "m1", "systemctl cat kube-scheduler; systemctl is-active kube-scheduler"); strings.Contains(o, "edited by hand") || !strings.HasSuffix(strings.TrimSpace(o), "active") {
			t.Errorf("m1's kube-scheduler after the run:\n%s", o)
		}
		if out := must(t, "khw", "plan"); !strings.Contains(out, "No changes.") {
			t.Errorf("the plan after the repair:\n%s", labtest.Tail(out, 30))
		}
	})

	t.Run("a kubelet stopped by hand is started and its node is Ready again", func(t *testing.T) {
		onNode(t, "n1", "systemctl stop kubelet")
		must(t, "khw", "run")
		if o := strings.TrimSpace(onNode(t, "n1", "systemctl is-active kubelet")); o != "active" {
			t.Fatalf("kubelet on n1 is %s after the run", o)
		}
		eventually(t, 2*time.Minute, "n1 Ready again", func() string { return ready(t, workers...) })
	})

	t.Run("a worker destroyed by hand is rebuilt and rejoins", func(t *testing.T) {
		must(t, "docker", "rm", "-f", "n2")
		out := must(t, "khw", "run")
		if !strings.Contains(out, "vm.n2: created") && !strings.Contains(out, "vm.n2: replaced") {
			t.Errorf("n2 was not made anew:\n%s", labtest.Tail(out, 40))
		}
		eventually(t, 3*time.Minute, "every worker Ready", func() string { return ready(t, workers...) })
		// Its pods run again: every pod of the cluster is Running.
		eventually(t, 4*time.Minute, "every pod Running", func() string {
			o := kubectl(t, "get", "pods", "-A", "--no-headers", "-o", "custom-columns=NS:.metadata.namespace,NAME:.metadata.name,PHASE:.status.phase,NODE:.spec.nodeName")
			for _, l := range strings.Split(strings.TrimSpace(o), "\n") {
				if !strings.Contains(l, "Running") {
					return l
				}
			}
			return ""
		})
		if out := must(t, "khw", "run"); !strings.Contains(out, "No changes.") {
			t.Errorf("the run after the rebuild:\n%s", labtest.Tail(out, 30))
		}
	})

	t.Run("destroy leaves nothing", func(t *testing.T) { destroyed(t) })
}

func controlPlane(t *testing.T, controllers []string) {
	// The pinned version, through the load balancer.
	v := must(t, "exec", "curl", "-fsS", "--cacert", workdir+"/ca.pem", "https://10.200.1.15:6443/version")
	var version struct{ GitVersion string }
	if err := json.Unmarshal([]byte(v[strings.Index(v, "{"):]), &version); err != nil || version.GitVersion != "v1.34.4" {
		t.Errorf("/version through the load balancer: %q (%v)", v, err)
	}
	readyz := kubectl(t, "get", "--raw=/readyz?verbose")
	if !strings.Contains(readyz, "readyz check passed") || strings.Contains(readyz, "failed") {
		t.Errorf("readyz:\n%s", readyz)
	}
	members := onNode(t, "m1", "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/ca.pem --cert=/etc/etcd/kubernetes.pem --key=/etc/etcd/kubernetes-key.pem member list")
	for _, c := range controllers {
		if !regexp.MustCompile(`started, ` + c + `, https://` + regexp.QuoteMeta(ips[c]) + `:2380`).MatchString(members) {
			t.Errorf("etcd member %s is not started:\n%s", c, members)
		}
	}
	if n := strings.Count(members, ", started, "); n != len(controllers) {
		t.Errorf("%d etcd members, want %d:\n%s", n, len(controllers), members)
	}
	// Kubernetes The Hard Way's first smoke test: data encryption.
	kubectl(t, "create", "secret", "generic", "kubernetes-the-hard-way", "--from-literal=mykey=mydata")
	raw := onNode(t, "m1", "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/ca.pem --cert=/etc/etcd/kubernetes.pem --key=/etc/etcd/kubernetes-key.pem get /registry/secrets/default/kubernetes-the-hard-way | hexdump -C")
	if !strings.Contains(strings.ReplaceAll(raw, "\n", ""), "k8s:enc:aescbc:v1:key1") && !strings.Contains(raw, "|k8s:enc:aescbc:v1:key1") {
		// hexdump splits lines every 16 bytes; look at the ASCII column.
		var ascii strings.Builder
		for _, l := range strings.Split(raw, "\n") {
			if i, j := strings.Index(l, "|"), strings.LastIndex(l, "|"); i >= 0 && j > i {
				ascii.WriteString(l[i+1 : j])
			}
		}
		if !strings.Contains(ascii.String(), "k8s:enc:aescbc:v1:key1") {
			t.Errorf("the secret is not stored encrypted:\n%s", raw)
		}
	}
	for _, lease := range []string{"kube-controller-manager", "kube-scheduler"} {
		holder := kubectl(t, "-n", "kube-system", "get", "lease", lease, "-o", "jsonpath={.spec.holderIdentity}")
		if !regexp.MustCompile(`^(` + strings.Join(controllers, "|") + `)_`).MatchString(strings.TrimSpace(holder)) {
			t.Errorf("lease %s is held by %q", lease, holder)
		}
	}
	kubectl(t, "get", "clusterrole", "system:kube-apiserver-to-kubelet")
	binding := kubectl(t, "get", "clusterrolebinding", "system:kube-apiserver", "-o", "jsonpath={.subjects[0].name}")
	if strings.TrimSpace(binding) != "kubernetes" {
		t.Errorf("system:kube-apiserver is bound to %q", binding)
	}
}

func smokeTests(t *testing.T, workers []string) {
	eventually(t, time.Minute, "every worker Ready", func() string { return ready(t, workers...) })

	kubectl(t, "create", "deployment", "nginx", "--image=nginx:latest")
	pod := running(t, "app=nginx", 1)[0]

	// Port forwarding, then the request in the pod's log. lab.sh runs
	// kubectl as its child: the whole process group ends with the test.
	pf := exec.Command("bash", filepath.Join(root, "scripts", "lab.sh"), "kubectl", "port-forward", pod, "8080:80")
	pf.Dir = root
	pf.Env = append(os.Environ(), containers...)
	pf.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pfOut := &labtest.Buffer{}
	pf.Stdout, pf.Stderr = pfOut, pfOut
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() { _ = syscall.Kill(-pf.Process.Pid, syscall.SIGKILL); _ = pf.Wait() }
	defer stop()
	eventually(t, 30*time.Second, "port-forward answers", func() string {
		o, err := lab(t, "exec", "curl", "-sS", "--head", "http://127.0.0.1:8080")
		if err != nil || !strings.Contains(o, "HTTP/1.1 200 OK") {
			return o + pfOut.String()
		}
		return ""
	})
	stop()
	eventually(t, 20*time.Second, "kubectl logs shows the request", func() string {
		if o := kubectl(t, "logs", pod); !strings.Contains(o, `"HEAD / HTTP/1.1" 200`) {
			return o
		}
		return ""
	})
	if o := kubectl(t, "exec", pod, "--", "nginx", "-v"); !strings.Contains(o, "nginx version: nginx/") {
		t.Errorf("nginx -v: %s", o)
	}

	// Services: a NodePort on every worker.
	kubectl(t, "expose", "deployment", "nginx", "--port", "80", "--type", "NodePort")
	port := strings.TrimSpace(kubectl(t, "get", "svc", "nginx", "-o", "jsonpath={.spec.ports[0].nodePort}"))
	for _, w := range workers {
		eventually(t, 30*time.Second, "the NodePort on "+w, func() string {
			o, err := lab(t, "exec", "curl", "-sS", "--head", "--max-time", "5", "http://"+ips[w]+":"+port)
			if err != nil || !strings.Contains(o, "HTTP/1.1 200 OK") {
				return o
			}
			return ""
		})
	}

	// DNS, as the older guide tests it, and the service by name.
	kubectl(t, "run", "busybox", "--image=busybox:1.28", "--command", "--", "sleep", "3600")
	running(t, "run=busybox", 1)
	eventually(t, time.Minute, "nslookup kubernetes", func() string {
		o, err := lab(t, "kubectl", "exec", "busybox", "--", "nslookup", "kubernetes")
		if err != nil || !regexp.MustCompile(`Address( 1)?:\s+10\.32\.0\.1\b`).MatchString(o[strings.Index(o, "kubernetes"):]) {
			return o
		}
		return ""
	})
	eventually(t, time.Minute, "the service nginx by name", func() string {
		o, err := lab(t, "kubectl", "exec", "busybox", "--", "wget", "-q", "-O", "-", "http://nginx")
		if err != nil || !strings.Contains(o, "nginx") {
			return o
		}
		return ""
	})

	podToPod(t, workers[len(workers)-1], workers[0])
}

// podToPod: a pod on one worker answers a pod on another, across flannel.
func podToPod(t *testing.T, server, client string) {
	t.Helper()
	manifest := func(name, node string, cmd ...string) string {
		b, _ := json.Marshal(map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": name, "labels": map[string]string{"test": "pod-to-pod"}},
			"spec": map[string]any{"nodeName": node, "containers": []any{map[string]any{
				"name": "c", "image": "busybox:latest", "command": cmd}}},
		})
		return string(b)
	}
	for name, spec := range map[string]string{
		"web-" + server:    manifest("web-"+server, server, "busybox", "httpd", "-f", "-p", "8080", "-h", "/etc"),
		"client-" + client: manifest("client-"+client, client, "sleep", "3600"),
	} {
		f := filepath.Join(t.TempDir(), name+".json")
		if err := os.WriteFile(f, []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		kubectl(t, "apply", "-f", f)
	}
	running(t, "test=pod-to-pod", 2)
	ip := strings.TrimSpace(kubectl(t, "get", "pod", "web-"+server, "-o", "jsonpath={.status.podIP}"))
	if !strings.HasPrefix(ip, "10.100.") {
		t.Fatalf("pod IP %q is outside the pod CIDR", ip)
	}
	eventually(t, time.Minute, "pod on "+client+" reaches pod on "+server, func() string {
		o, err := lab(t, "kubectl", "exec", "client-"+client, "--", "wget", "-q", "-O", "-", "http://"+ip+":8080/hostname")
		if err != nil || strings.TrimSpace(o) != "web-"+server {
			return o
		}
		return ""
	})
}

func destroyed(t *testing.T) {
	if out, err := lab(t, "khw", "destroy"); err != nil {
		t.Fatalf("destroy: %v\n%s", err, labtest.Tail(out, 30))
	}
	if o := must(t, "docker", "ps", "-aq"); strings.TrimSpace(o) != "" {
		t.Errorf("containers left after destroy: %s", o)
	}
	if o := must(t, "docker", "volume", "ls", "-q"); strings.TrimSpace(o) != "" {
		t.Errorf("volumes (node disks, the registry's store) left after destroy: %s", o)
	}
	if o := must(t, "exec", "ip", "-br", "link"); strings.Contains(o, "br0") || strings.Contains(o, "flannel") || strings.Contains(o, "cni0") {
		t.Errorf("links left after destroy:\n%s", o)
	}
	if o := must(t, "exec", "iptables-save"); strings.Contains(o, "khw:") || strings.Contains(o, "KUBE-") {
		t.Errorf("rules left after destroy:\n%s", o)
	}
}

// TestClusterThreeByThree is the fork: 3 controllers and 3 workers.
func TestClusterThreeByThree(t *testing.T) {
	if os.Getenv("KHW_E2E") == "" {
		t.Skip("the cluster runs with KHW_E2E=1 (make e2e)")
	}
	up(t, "--set", "controllers=3", "--set", "workers=3")
	controllers, workers := []string{"m1", "m2", "m3"}, []string{"n1", "n2", "n3"}
	eventually(t, time.Minute, "3 workers Ready", func() string { return ready(t, workers...) })
	members := onNode(t, "m1", "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/ca.pem --cert=/etc/etcd/kubernetes.pem --key=/etc/etcd/kubernetes-key.pem member list")
	if n := strings.Count(members, ", started, "); n != 3 {
		t.Errorf("%d etcd members started, want 3:\n%s", n, members)
	}
	if o := must(t, "docker", "exec", "proxy", "/usr/sbin/nginx", "-T", "-c", "/etc/khw/nginx.conf"); strings.Count(o, ":6443;") != len(controllers) {
		t.Errorf("the load balancer's upstreams:\n%s", o)
	}
	podToPod(t, "n3", "n1")
	must(t, "docker", "stop", "m3")
	eventually(t, time.Minute, "readyz through the load balancer with m3 down", func() string {
		if o, err := lab(t, "kubectl", "get", "--raw=/readyz"); err != nil || strings.TrimSpace(o) != "ok" {
			return o
		}
		return ""
	})
	must(t, "docker", "start", "m3")
	destroyed(t)
}
