// Package image builds single-binary OCI images without a container
// daemon: one layer holding a static binary (plus /etc/passwd, /etc/group
// and writable scratch directories) on an empty base, written as an OCI
// image layout archive that `docker load`, `podman load`, skopeo
// (oci-archive:) and crane all read.
package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRootUser is the conventional unprivileged uid:gid of distroless images.
const NonRootUser = "65532:65532"

// Spec describes an image.
type Spec struct {
	// Binary is the host path of a statically linked executable.
	Binary string
	// Path is where the binary lands in the image (default "/" + base name).
	Path string
	// Entrypoint defaults to [Path].
	Entrypoint []string
	Cmd        []string
	// User is "uid[:gid]"; default NonRootUser. Use "0" only where the
	// program needs capabilities (they do not reach non-root processes).
	User string
	// Ref names the image (e.g. kubelink/netd:0.1.0): the layout's
	// org.opencontainers.image.ref.name and the docker RepoTag.
	Ref    string
	Labels map[string]string
	Env    []string
	// ExposedPorts like "53/udp".
	ExposedPorts []string
	// Dirs are writable directories created in the image (mode 1777), e.g. /tmp.
	Dirs []string
	// OS and Arch default to the binary's ELF machine (linux).
	OS, Arch string
	// Created is the image timestamp and every file's mtime; the zero value
	// means the Unix epoch, so identical inputs give identical digests.
	Created time.Time
}

// Build assembles the image.
func Build(s Spec) (v1.Image, error) {
	if s.Path == "" {
		s.Path = "/" + filepath.Base(s.Binary)
	}
	if !path.IsAbs(s.Path) {
		return nil, fmt.Errorf("image path %q must be absolute", s.Path)
	}
	if len(s.Entrypoint) == 0 {
		s.Entrypoint = []string{s.Path}
	}
	if s.User == "" {
		s.User = NonRootUser
	}
	if s.OS == "" {
		s.OS = "linux"
	}
	arch, err := checkStatic(s.Binary)
	if err != nil {
		return nil, err
	}
	if s.Arch == "" {
		s.Arch = arch
	}
	if s.Created.IsZero() {
		s.Created = time.Unix(0, 0).UTC()
	}
	bin, err := os.ReadFile(s.Binary)
	if err != nil {
		return nil, fmt.Errorf("reading binary: %w", err)
	}
	layerTar, err := layerContent(s, bin)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("building layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: s.Created},
			CreatedBy: "ocibuild " + path.Base(s.Path),
			Comment:   "static binary on an empty base",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("appending layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = s.OS, s.Arch
	cf.Created = v1.Time{Time: s.Created}
	cf.Author = s.Labels["org.opencontainers.image.authors"]
	cf.Config = v1.Config{
		Entrypoint: s.Entrypoint,
		Cmd:        s.Cmd,
		User:       s.User,
		Env:        append([]string{"PATH=/"}, s.Env...),
		WorkingDir: "/",
		Labels:     s.Labels,
	}
	if len(s.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range s.ExposedPorts {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("setting config: %w", err)
	}
	return img, nil
}

// checkStatic refuses dynamically linked binaries: the base is empty, so
// there is no loader or libc. It returns the OCI architecture name.
func checkStatic(file string) (string, error) {
	f, err := elf.Open(file)
	if err != nil {
		return "", fmt.Errorf("%s is not an ELF executable: %w", file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked (build with CGO_ENABLED=0): an empty base image has no loader", file)
		}
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_386:
		return "386", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_PPC64:
		return "ppc64le", nil
	case elf.EM_S390:
		return "s390x", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	}
	return runtime.GOARCH, nil
}

// layerContent is the single layer: the binary, passwd/group naming root
// and nonroot, and the scratch directories. Entries are sorted and carry
// Created as mtime so the digest only depends on the inputs.
func layerContent(s Spec, bin []byte) ([]byte, error) {
	type entry struct {
		name string
		mode int64
		data []byte
		dir  bool
	}
	entries := []entry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: strings.TrimPrefix(s.Path, "/"), mode: 0o755, data: bin},
	}
	dirs := map[string]bool{"etc/": true}
	addParents := func(p string) {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if !dirs[d+"/"] {
				dirs[d+"/"] = true
				entries = append(entries, entry{name: d + "/", mode: 0o755, dir: true})
			}
		}
	}
	addParents(strings.TrimPrefix(s.Path, "/"))
	for _, d := range s.Dirs {
		d = strings.Trim(d, "/")
		if d == "" {
			return nil, errors.New("empty directory name")
		}
		addParents(d)
		if !dirs[d+"/"] {
			dirs[d+"/"] = true
			entries = append(entries, entry{name: d + "/", mode: 0o1777, dir: true})
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: s.Created, Format: tar.FormatPAX, Uname: "root", Gname: "root"}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteArchive writes img as a tar of an OCI image layout (oci-layout,
// index.json, blobs/) plus a docker-style manifest.json for older
// `docker load`.
func WriteArchive(out string, img v1.Image, ref string) error {
	dir, err := os.MkdirTemp("", "ocibuild-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("creating layout: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	ann := map[string]string{}
	if ref != "" {
		ann["org.opencontainers.image.ref.name"] = ref
		ann["io.containerd.image.name"] = ref
	}
	if err := p.AppendImage(img, layout.WithAnnotations(ann), layout.WithPlatform(v1.Platform{OS: cf.OS, Architecture: cf.Architecture})); err != nil {
		return fmt.Errorf("writing layout: %w", err)
	}
	if err := writeDockerManifest(dir, img, ref); err != nil {
		return err
	}
	return tarDir(dir, out, cf.Created.Time)
}

func writeDockerManifest(dir string, img v1.Image, ref string) error {
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	entry := struct {
		Config   string
		RepoTags []string `json:",omitempty"`
		Layers   []string
	}{Config: blobPath(m.Config.Digest)}
	if ref != "" {
		entry.RepoTags = []string{ref}
	}
	for _, l := range m.Layers {
		entry.Layers = append(entry.Layers, blobPath(l.Digest))
	}
	b, err := json.Marshal([]any{entry})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644)
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// tarDir archives dir deterministically (sorted, fixed mtime) into out,
// replacing it atomically.
func tarDir(dir, out string, mtime time.Time) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".ocibuild-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	for _, f := range files {
		fi, err := os.Lstat(f)
		if err != nil {
			return err
		}
		name, _ := filepath.Rel(dir, f)
		h := &tar.Header{Name: filepath.ToSlash(name), ModTime: mtime, Mode: 0o644, Typeflag: tar.TypeReg, Size: fi.Size()}
		if fi.IsDir() {
			h.Name += "/"
			h.Mode, h.Typeflag, h.Size = 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.IsDir() {
			if err := copyFile(tw, f); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

func copyFile(w io.Writer, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
