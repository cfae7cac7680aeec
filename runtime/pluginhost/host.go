// Package pluginhost finds, launches and talks to provider plugins: the
// binaries named khw-plugin-NAME, run as child processes over go-plugin's
// gRPC transport. It hands them to the runtime as sdk.Providers.
package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/khw-dev/khw/plugins/sdk"
	"github.com/khw-dev/khw/runtime"
)

// BinaryPrefix starts every plugin binary's name.
const BinaryPrefix = "khw-plugin-"

// PathEnv lists extra plugin directories, separated by ':'.
const PathEnv = "KHW_PLUGIN_PATH"

// PrefixEnv is the command prefix for one plugin, e.g.
// KHW_PLUGIN_PREFIX_HOSTNET="sudo -n -E" runs only host networking as root.
const PrefixEnv = "KHW_PLUGIN_PREFIX_"

// DefaultSearchPath is where plugins are looked for, in order: the
// directories in $KHW_PLUGIN_PATH, the directory of the khw binary, and the
// per-user directory ($XDG_DATA_HOME/khw/plugins, by default
// ~/.local/share/khw/plugins).
func DefaultSearchPath() []string {
	var dirs []string
	for _, d := range filepath.SplitList(os.Getenv(PathEnv)) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		dirs = append(dirs, filepath.Dir(exe))
	}
	data := os.Getenv("XDG_DATA_HOME")
	if data == "" {
		if home, err := os.UserHomeDir(); err == nil {
			data = filepath.Join(home, ".local", "share")
		}
	}
	if data != "" {
		dirs = append(dirs, filepath.Join(data, "khw", "plugins"))
	}
	return dirs
}

// Host launches plugins on first use and keeps them until Close.
type Host struct {
	InProcess  sdk.Provider
	SearchPath []string
	Logger     hclog.Logger
	// Check, when set, judges a plugin's schema as the plugin reports it
	// at start-up (runtime.Registry.CheckSchema: does it serve what khw's
	// builtins need from it, and nothing they need from another?). A
	// plugin that fails it is not used: every use returns the error.
	Check func(*sdk.Schema) error

	mu      sync.Mutex
	plugins map[string]*entry
}

type entry struct {
	once   sync.Once
	client *plugin.Client
	prov   sdk.Provider
	err    error
}

// New returns a host serving in-process types through inProcess.
func New(inProcess sdk.Provider) *Host {
	return &Host{
		InProcess:  inProcess,
		SearchPath: DefaultSearchPath(),
		Logger:     hclog.New(&hclog.LoggerOptions{Name: "plugin", Level: LogLevel(), Output: os.Stderr}),
		plugins:    map[string]*entry{},
	}
}

// LogLevel is the level KHW_LOG asks for (trace, debug, info, warn,
// error); errors only by default.
func LogLevel() hclog.Level {
	if l := hclog.LevelFromString(os.Getenv("KHW_LOG")); l != hclog.NoLevel {
		return l
	}
	return hclog.Error
}

// NotFoundError says a plugin binary is nowhere on the search path.
type NotFoundError struct {
	Name     string
	Searched []string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("plugin %q is not installed: no %s%s in %s", e.Name, BinaryPrefix, e.Name, strings.Join(e.Searched, ", "))
}

// ErrorHint says how to install it (sdk.Hinted).
func (e *NotFoundError) ErrorHint() string {
	return fmt.Sprintf("install the plugin: `make build` puts %s%s in bin/ next to bin/khw; or add the directory that holds it to $%s",
		BinaryPrefix, e.Name, PathEnv)
}

// debugHint is the next step when a plugin dies or does not start: its
// own output, which khw shows at debug level.
const debugHint = "run again with KHW_LOG=debug to see what the plugin printed"

// Find returns the path of plugin name's binary.
func (h *Host) Find(name string) (string, error) {
	for _, d := range h.SearchPath {
		p := filepath.Join(d, BinaryPrefix+name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &NotFoundError{Name: name, Searched: h.SearchPath}
}

// Found is one plugin binary on the search path.
type Found struct {
	Name, Path string
}

// List returns every plugin binary on the search path; the first of a name
// wins, as in Find.
func (h *Host) List() []Found {
	seen := map[string]bool{}
	var out []Found
	for _, d := range h.SearchPath {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			name, ok := strings.CutPrefix(e.Name(), BinaryPrefix)
			if !ok || seen[name] || e.IsDir() {
				continue
			}
			seen[name] = true
			out = append(out, Found{Name: name, Path: filepath.Join(d, e.Name())})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Provider returns the provider called name, launching its plugin once.
func (h *Host) Provider(ctx context.Context, name string) (sdk.Provider, error) {
	if name == runtime.InProcess {
		return h.InProcess, nil
	}
	h.mu.Lock()
	e := h.plugins[name]
	if e == nil {
		e = &entry{}
		h.plugins[name] = e
	}
	h.mu.Unlock()
	e.once.Do(func() { e.client, e.prov, e.err = h.launch(ctx, name) })
	return e.prov, e.err
}

func (h *Host) launch(ctx context.Context, name string) (*plugin.Client, sdk.Provider, error) {
	path, err := h.Find(name)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(path)
	if prefix := strings.Fields(os.Getenv(PrefixEnv + strings.ToUpper(name))); len(prefix) > 0 {
		cmd = exec.Command(prefix[0], append(prefix[1:], path)...)
	}
	// If khw dies without closing its plugins (kill -9), the kernel sends
	// the plugin (or its launcher, such as sudo, which passes it on)
	// SIGTERM: no plugin outlives the run that started it. sdk.Serve
	// also watches for its parent going away.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          plugin.PluginSet{sdk.PluginKey: &sdk.GRPCPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Managed:          true,
		StartTimeout:     15 * time.Second,
		Logger:           h.Logger.Named(name),
		Stderr:           io.Discard,
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, nil, sdk.WithHint(fmt.Errorf("plugin %q (%s) did not start: %v", name, path, err), debugHint)
	}
	raw, err := rpc.Dispense(sdk.PluginKey)
	if err != nil {
		client.Kill()
		return nil, nil, fmt.Errorf("plugin %q (%s): %v", name, path, err)
	}
	g := &guarded{name: name, client: client, p: raw.(sdk.Provider), log: h.Logger.Named(name)}
	sc, err := g.p.Describe(ctx)
	if err = g.wrap(err); err != nil {
		client.Kill()
		return nil, nil, err
	}
	if sc.Name != name {
		client.Kill()
		return nil, nil, fmt.Errorf("%s says it is plugin %q, not %q", path, sc.Name, name)
	}
	if h.Check != nil {
		if err := h.Check(sc); err != nil {
			client.Kill()
			return nil, nil, fmt.Errorf("plugin %q (%s) cannot be used: %w", name, path, err)
		}
	}
	g.schema = sc
	return client, g, nil
}

// Describe launches a plugin and returns what it serves.
func (h *Host) Describe(ctx context.Context, name string) (*sdk.Schema, error) {
	p, err := h.Provider(ctx, name)
	if err != nil {
		return nil, err
	}
	return p.Describe(ctx)
}

// Close stops every plugin process.
func (h *Host) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.plugins {
		if e.client != nil {
			e.client.Kill()
		}
	}
}

// guarded turns transport failures into errors that name the plugin and
// say whether its process died. Once it has died, calls fail at once with
// that news instead of each reporting its own broken connection.
type guarded struct {
	name   string
	client *plugin.Client
	p      sdk.Provider
	log    hclog.Logger
	// schema is what the plugin reported at start-up: Describe answers
	// it, so that every reading of the plugin's types (the planner's
	// update rule) sees the one schema that was checked.
	schema *sdk.Schema

	mu   sync.Mutex
	dead error
}

func (g *guarded) wrap(err error) error {
	if err == nil {
		return nil
	}
	var de *sdk.DiagError
	if errors.As(err, &de) {
		return err // the provider's own words
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Canceled {
		return context.Canceled
	}
	// A dead process shows up as a broken connection first and as Exited a
	// moment later.
	for i := 0; i < 20 && !g.client.Exited(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if g.client.Exited() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.dead == nil {
			// The transport's words (a closed connection, a refused
			// dial) say nothing more than that; they go to the debug log.
			g.log.Debug("plugin ended", "error", status.Convert(err).Message())
			g.dead = sdk.WithHint(fmt.Errorf("plugin %q crashed or was killed; nothing more was sent to it", g.name), debugHint)
		}
		return g.dead
	}
	return fmt.Errorf("plugin %q: %v", g.name, status.Convert(err).Message())
}

// gone is the news of the plugin's death, once it has died.
func (g *guarded) gone() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dead
}

// Describe is the schema the plugin reported at start-up.
func (g *guarded) Describe(context.Context) (*sdk.Schema, error) {
	sc := *g.schema
	sc.Types = append([]sdk.TypeInfo(nil), g.schema.Types...)
	return &sc, nil
}

func (g *guarded) Read(ctx context.Context, req *sdk.ReadRequest) (*sdk.ReadResponse, error) {
	if err := g.gone(); err != nil {
		return nil, err
	}
	r, err := g.p.Read(ctx, req)
	return r, g.wrap(err)
}

// ReadMany reads a batch in one call (see sdk.BatchReader).
func (g *guarded) ReadMany(ctx context.Context, reqs []*sdk.ReadRequest) ([]sdk.ReadResult, error) {
	if err := g.gone(); err != nil {
		return nil, err
	}
	rs, err := sdk.ReadAll(ctx, g.p, reqs)
	if err != nil {
		return nil, g.wrap(err)
	}
	for i := range rs {
		rs[i].Err = g.wrap(rs[i].Err)
	}
	return rs, nil
}

func (g *guarded) Plan(ctx context.Context, req *sdk.PlanRequest) (*sdk.PlanResponse, error) {
	if err := g.gone(); err != nil {
		return nil, err
	}
	r, err := g.p.Plan(ctx, req)
	return r, g.wrap(err)
}

func (g *guarded) Apply(ctx context.Context, req *sdk.ApplyRequest, p sdk.Progress) (*sdk.ApplyResponse, error) {
	if err := g.gone(); err != nil {
		return nil, err
	}
	r, err := g.p.Apply(ctx, req, p)
	return r, g.wrap(err)
}

func (g *guarded) Delete(ctx context.Context, req *sdk.DeleteRequest) error {
	if err := g.gone(); err != nil {
		return err
	}
	return g.wrap(g.p.Delete(ctx, req))
}
