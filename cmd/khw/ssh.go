package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/khw-dev/khw/runtime"
)

// sshNode is how to reach one node of a lab, from the state.
type sshNode struct {
	name, ip, user, identity string
	port                     int
}

// labNodes reads the nodes a workdir's state records (VMs, containers, and
// machines declared with node.host), by name.
func labNodes(workdir string) (map[string]sshNode, error) {
	store, err := runtime.OpenStore(workdir)
	if err != nil {
		return nil, err
	}
	out := map[string]sshNode{}
	for _, addr := range store.Addrs() {
		rs := store.Get(addr)
		str := func(k string) string { s, _ := rs.Inputs[k].(string); return s }
		switch rs.Type {
		case "vm":
			pub := str("ssh_public_key")
			out[rs.Name] = sshNode{name: rs.Name, ip: str("ip"), user: str("user"), port: 22,
				identity: filepath.Join(workdir, strings.TrimSuffix(pub, ".pub"))}
		case "node.host":
			port := 22
			if p, ok := rs.Inputs["port"].(float64); ok {
				port = int(p)
			}
			key := "id_ed25519"
			for d := range rs.Deps {
				if name, ok := strings.CutPrefix(d, "ssh.key."); ok {
					key = name
				}
			}
			out[rs.Name] = sshNode{name: rs.Name, ip: str("host"), user: str("user"), port: port, identity: filepath.Join(workdir, key)}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the workdir %s records no node: run khw run first (or give --workdir)", workdir)
	}
	return out, nil
}

// sshArgs are OpenSSH's arguments to reach n with the workspace key and
// the host key khw pinned, never asking about an unknown one.
func sshArgs(workdir string, n sshNode) []string {
	return []string{"-i", n.identity, "-p", fmt.Sprint(n.port),
		"-o", "UserKnownHostsFile=" + filepath.Join(workdir, "known_hosts"),
		"-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
		n.user + "@" + n.ip}
}

func newSSHCmd() *cobra.Command {
	var workdir string
	var printOnly bool
	cmd := &cobra.Command{
		Use:   "ssh NODE [-- COMMAND...]",
		Short: "Log in to a node of the lab (or run a command there) with the workspace key",
		Long: `ssh runs OpenSSH to a node of the lab: the node's address and user come from
the workdir's state, the key is the workspace's (WORKDIR/id_ed25519), and the
node's host key must be the one khw pinned (WORKDIR/known_hosts), as vagrant
ssh does. Everything after -- is run on the node.`,
		Example: `  khw ssh m1                                   # a shell on m1
  khw ssh n1 -- sudo systemctl status kubelet  # one command
  khw ssh --print m1                           # the ssh command line, to copy
  khw ssh-config >> ~/.ssh/config              # then: ssh m1`,
		Args: cobra.MinimumNArgs(1),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			nodes, _ := labNodes(workdir)
			var names []string
			for n := range nodes {
				names = append(names, n)
			}
			sort.Strings(names)
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			workdir, err := filepath.Abs(workdir)
			if err != nil {
				return err
			}
			nodes, err := labNodes(workdir)
			if err != nil {
				return err
			}
			n, ok := nodes[args[0]]
			if !ok {
				var names []string
				for name := range nodes {
					names = append(names, name)
				}
				sort.Strings(names)
				return fmt.Errorf("no node %q in %s (the nodes are: %s)", args[0], workdir, strings.Join(names, ", "))
			}
			argv := append([]string{"ssh"}, sshArgs(workdir, n)...)
			if len(args) > 1 {
				argv = append(argv, "--")
				argv = append(argv, args[1:]...)
			}
			if printOnly {
				fmt.Fprintln(cmd.OutOrStdout(), shellJoin(argv))
				return nil
			}
			path, err := exec.LookPath("ssh")
			if err != nil {
				return fmt.Errorf("OpenSSH's ssh is not installed (apt-get install openssh-client)")
			}
			return syscall.Exec(path, argv, os.Environ())
		},
	}
	cmd.Flags().StringVar(&workdir, "workdir", defaultWorkdir(), "the lab's workdir (default from $"+WorkdirEnv+")")
	cmd.Flags().BoolVar(&printOnly, "print", false, "print the ssh command instead of running it")
	return cmd
}

func newSSHConfigCmd() *cobra.Command {
	var workdir string
	cmd := &cobra.Command{
		Use:   "ssh-config",
		Short: "Print an OpenSSH config block for every node of the lab",
		Long: `ssh-config prints a Host block per node (address, user, the workspace key,
the pinned host keys), for ~/.ssh/config or ssh -F, as vagrant ssh-config does.`,
		Example: `  khw ssh-config > lab.ssh && ssh -F lab.ssh m1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			workdir, err := filepath.Abs(workdir)
			if err != nil {
				return err
			}
			nodes, err := labNodes(workdir)
			if err != nil {
				return err
			}
			writeSSHConfig(cmd.OutOrStdout(), workdir, nodes)
			return nil
		},
	}
	cmd.Flags().StringVar(&workdir, "workdir", defaultWorkdir(), "the lab's workdir (default from $"+WorkdirEnv+")")
	return cmd
}

func writeSSHConfig(w io.Writer, workdir string, nodes map[string]sshNode) {
	var names []string
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		n := nodes[name]
		fmt.Fprintf(w, "Host %s\n  HostName %s\n  Port %d\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n\n",
			n.name, n.ip, n.port, n.user, n.identity, filepath.Join(workdir, "known_hosts"))
	}
}

// shellJoin quotes argv for a POSIX shell where needed.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`;&|<>*?()[]{}!#~") {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
