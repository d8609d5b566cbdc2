// Package images_test checks the daemonless OCI image archives built by
// hack/ocibuild (`make images`): a tiny static Go binary built here is
// packaged with the real command, and the archive is read back as an OCI
// layout and as a docker-load tarball; the binary extracted from the layer
// must run.
package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/kubelink/kubelink/hack/ocibuild/image"
	"github.com/kubelink/kubelink/test/testenv"
)

const tinyMain = `package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("tiny version v1.2.3")
		return
	}
	fmt.Fprintln(os.Stderr, "usage: tiny version")
	os.Exit(2)
}
`

func goBuild(t *testing.T, ctx context.Context, dir string, env []string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(runtime.GOROOT(), "bin", "go"), append([]string{"build"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", args, err, out)
	}
}

// tools builds the tiny static binary and the ocibuild command.
func tools(t *testing.T, ctx context.Context) (tiny, ocibuild string) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module tiny\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(tinyMain), 0o644); err != nil {
		t.Fatal(err)
	}
	tiny = filepath.Join(dir, "tiny")
	goBuild(t, ctx, src, []string{"CGO_ENABLED=0", "GOFLAGS=-buildvcs=false"}, "-trimpath", "-o", tiny, ".")
	ocibuild = filepath.Join(dir, "ocibuild")
	goBuild(t, ctx, testenv.RepoRoot(), nil, "-o", ocibuild, "./hack/ocibuild")
	return tiny, ocibuild
}

func TestTinyImage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tiny, ocibuild := tools(t, ctx)
	out := filepath.Join(t.TempDir(), "images", "tiny.tar")
	const ref = "kubelink/tiny:v1.2.3"
	build := func(out string) {
		cmd := exec.CommandContext(ctx, ocibuild, "-binary", tiny, "-path", "/usr/bin/tiny", "-ref", ref,
			"-label", "org.opencontainers.image.title=tiny", "-label", "org.opencontainers.image.version=v1.2.3",
			"-port", "8053/udp", "-dir", "/tmp", "-o", out)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ocibuild: %v\n%s", err, b)
		}
	}
	build(out)

	img := checkArchive(t, out, ref, "/usr/bin/tiny", image.NonRootUser)
	cf, _ := img.ConfigFile()
	if cf.Config.Labels["org.opencontainers.image.title"] != "tiny" || cf.Config.Labels["org.opencontainers.image.version"] != "v1.2.3" {
		t.Errorf("labels %v", cf.Config.Labels)
	}
	if _, ok := cf.Config.ExposedPorts["8053/udp"]; !ok {
		t.Errorf("exposed ports %v", cf.Config.ExposedPorts)
	}
	if !cf.Created.Time.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("created %v, want SOURCE_DATE_EPOCH", cf.Created)
	}
	files := layerFiles(t, img)
	if h := files["tmp"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode&0o1777 != 0o1777 {
		t.Errorf("no world-writable /tmp in the layer: %+v", h)
	}
	if h := files["etc/passwd"]; h == nil {
		t.Errorf("no /etc/passwd in the layer")
	}
	if out := runExtracted(t, ctx, img, "usr/bin/tiny", "version"); !strings.Contains(out, "tiny version v1.2.3") {
		t.Errorf("extracted binary printed %q", out)
	}

	// Same inputs, same bytes.
	again := filepath.Join(t.TempDir(), "tiny.tar")
	build(again)
	if a, b := fileSum(t, out), fileSum(t, again); a != b {
		t.Errorf("archives differ between identical builds: %s vs %s", a, b)
	}
}

// TestRejectsDynamicBinary: an empty base has no loader, so a dynamically
// linked binary must be refused, not packaged.
func TestRejectsDynamicBinary(t *testing.T) {
	var dyn string
	for _, c := range []string{"/bin/ls", "/usr/bin/env", "/bin/sh"} {
		if b, err := os.ReadFile(c); err == nil && bytes.Contains(b, []byte("ld-linux")) {
			dyn = c
			break
		}
	}
	if dyn == "" {
		t.Skip("no dynamically linked system binary found")
	}
	_, err := image.Build(image.Spec{Binary: dyn})
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Fatalf("Build(%s) = %v, want a dynamically linked error", dyn, err)
	}
}

// TestProjectImages checks bin/images/*.tar from `make images` (make test
// builds them; without them the test skips, or fails in CI).
func TestProjectImages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct{ name, path, user, version string }{
		{"coredns", "/coredns", image.NonRootUser, "-version"},
		{"netd", "/netd", "0:0", "version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			archive := filepath.Join(testenv.RepoRoot(), "bin", "images", tc.name+".tar")
			if _, err := os.Stat(archive); err != nil {
				testenv.SkipOrFail(t, "%s not built: run `make images`", archive)
			}
			img := checkArchive(t, archive, "", tc.path, tc.user)
			if out := runExtracted(t, ctx, img, strings.TrimPrefix(tc.path, "/"), tc.version); strings.TrimSpace(out) == "" {
				t.Errorf("%s %s printed nothing", tc.path, tc.version)
			}
		})
	}
}

// checkArchive reads the archive as an OCI layout and as a docker tarball
// and validates both; ref "" accepts any reference.
func checkArchive(t *testing.T, archive, ref, entrypoint, user string) v1.Image {
	t.Helper()
	dir := t.TempDir()
	untar(t, archive, dir)
	b, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	var ol struct{ ImageLayoutVersion string }
	if err != nil || json.Unmarshal(b, &ol) != nil || ol.ImageLayoutVersion != "1.0.0" {
		t.Fatalf("oci-layout: %q, %v", b, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("reading OCI layout: %v", err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("invalid index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 1 {
		t.Fatalf("index %s with %d manifests", im.MediaType, len(im.Manifests))
	}
	desc := im.Manifests[0]
	gotRef := desc.Annotations["org.opencontainers.image.ref.name"]
	if ref != "" && gotRef != ref || gotRef == "" {
		t.Errorf("ref.name %q, want %q", gotRef, ref)
	}
	if desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture == "" {
		t.Errorf("platform %+v", desc.Platform)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("invalid image: %v", err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("manifest %s, config %s, layers %+v", m.MediaType, m.Config.MediaType, m.Layers)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != entrypoint {
		t.Errorf("entrypoint %v, want [%s]", cf.Config.Entrypoint, entrypoint)
	}
	if cf.Config.User != user {
		t.Errorf("user %q, want %q", cf.Config.User, user)
	}
	if cf.OS != "linux" || cf.Architecture != desc.Platform.Architecture || len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("config os %s arch %s diff_ids %v", cf.OS, cf.Architecture, cf.RootFS.DiffIDs)
	}

	// docker load reads manifest.json.
	var dm []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	b, err = os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil || json.Unmarshal(b, &dm) != nil || len(dm) != 1 {
		t.Fatalf("manifest.json: %q %v", b, err)
	}
	if dm[0].Config != "blobs/sha256/"+m.Config.Digest.Hex || len(dm[0].RepoTags) != 1 || dm[0].RepoTags[0] != gotRef {
		t.Errorf("manifest.json %+v", dm[0])
	}
	timg, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatalf("reading as a docker tarball: %v", err)
	}
	if err := validate.Image(timg); err != nil {
		t.Fatalf("invalid docker tarball image: %v", err)
	}
	d1, _ := img.Digest()
	cd, _ := timg.ConfigName()
	if cd != m.Config.Digest {
		t.Errorf("docker view config %s, OCI view %s (image %s)", cd, m.Config.Digest, d1)
	}
	return img
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("reading %s: %v", archive, err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("archive entry %q escapes", h.Name)
		}
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// layerFiles lists the flattened image filesystem.
func layerFiles(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = h
	}
}

// runExtracted copies name out of the image's filesystem and runs it.
func runExtracted(t *testing.T, ctx context.Context, img v1.Image, name string, args ...string) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s not in the image", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != name {
			continue
		}
		if h.Mode&0o111 == 0 {
			t.Errorf("%s is not executable: %o", name, h.Mode)
		}
		p := filepath.Join(t.TempDir(), filepath.Base(name))
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, p, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
