// Package spec is what builtins/image declares and khw-plugin-image reads:
// the shape of an image.build resource's inputs. A leaf package, so that
// the plugin does not link the recipe engine.
package spec

// FileEntry is a host file (or directory) put in the image, as the plugin
// gets it in the inputs' "files"; "contents", "symlinks" and "dirs" map
// image paths to text, link targets and octal modes.
type FileEntry struct {
	Path   string `json:"path"`
	Source string `json:"source"`           // absolute host path, or a workdir-relative file
	Binary bool   `json:"binary,omitempty"` // add its shared libraries and the loader
}

// Config is the image's runtime configuration, as the plugin gets it.
type Config struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workdir,omitempty"`
	User       string   `json:"user,omitempty"`
	Ports      []string `json:"ports,omitempty"`
}
