package vm

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Assets are the prepared, cached pieces of a guest run, as
// scripts/e2e-assets.sh reports them in $FERRYFS_E2E_CACHE/env.
type Assets struct {
	Cache            string // the cache directory
	Chroot           string // host path of the trixie chroot
	ChrootMountpoint string // empty directory in the chroot for the run directory ("/e2e")
	QEMU             string // qemu-system-x86_64, as a path inside the chroot
	HostQEMU         string // the host's own qemu-system-x86_64 (bookworm: QEMU 7.2)
	HostQEMUPackage  string
	Virtiofsd        string   // virtiofsd, as a path inside the chroot
	Kernel           string   // host path of the guest's vmlinuz
	ModulesDir       string   // host directory holding <module>.ko files
	Modules          []string // guest modules in insmod order
	Busybox          string   // host path of a static busybox
	// Package versions, for reports: "name=version".
	KernelPackage, BusyboxPackage, QEMUPackage, VirtiofsdPackage string
}

// assetsScript is the script that prepares the assets, relative to the
// module root.
const assetsScript = "scripts/e2e-assets.sh"

var (
	assetsOnce   sync.Once
	assetsCached *Assets
	assetsLog    string
	assetsErr    error
)

// LoadAssets returns the assets, running scripts/e2e-assets.sh once per
// test process to build or validate them (seconds when cached, a few
// minutes the first time). It fails t if they cannot be prepared, and skips
// t where VM tests cannot run (see RequireVM).
func LoadAssets(t testing.TB) *Assets {
	t.Helper()
	RequireVM(t)
	assetsOnce.Do(func() {
		assetsCached, assetsLog, assetsErr = prepareAssets()
	})
	if assetsErr != nil {
		t.Fatalf("preparing the VM test assets: %v\n%s", assetsErr, assetsLog)
	}
	return assetsCached
}

// prepareAssets runs the assets script and parses the env file it writes.
func prepareAssets() (*Assets, string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, "", err
	}
	script := filepath.Join(root, assetsScript)
	start := time.Now()
	cmd := exec.Command(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, out.String(), fmt.Errorf("%s: %w", script, err)
	}
	log := fmt.Sprintf("%s took %s\n%s", assetsScript, time.Since(start).Round(time.Millisecond), out.String())
	env, err := readEnvFile(filepath.Join(cacheDir(), "env"))
	if err != nil {
		return nil, log, err
	}
	a, err := assetsFromEnv(env)
	if err != nil {
		return nil, log, err
	}
	return a, log, a.check()
}

// cacheDir is the cache directory the script uses.
func cacheDir() string {
	if d := os.Getenv("FERRYFS_E2E_CACHE"); d != "" {
		return d
	}
	return "/var/cache/ferryfs-e2e"
}

// readEnvFile parses the script's KEY='value' lines.
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the assets' env file: %w", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
			return nil, fmt.Errorf("%s:%d: want KEY='value', got %q", path, n, line)
		}
		env[k] = v[1 : len(v)-1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return env, nil
}

// assetsFromEnv fills Assets from the env file's variables.
func assetsFromEnv(env map[string]string) (*Assets, error) {
	var missing []string
	get := func(k string) string {
		v, ok := env[k]
		if !ok || v == "" {
			missing = append(missing, k)
		}
		return v
	}
	a := &Assets{
		Cache:            get("FERRYFS_E2E_CACHE"),
		Chroot:           get("CHROOT"),
		ChrootMountpoint: get("CHROOT_MOUNTPOINT"),
		QEMU:             get("QEMU"),
		HostQEMU:         get("HOST_QEMU"),
		HostQEMUPackage:  get("HOST_QEMU_PACKAGE"),
		Virtiofsd:        get("VIRTIOFSD"),
		Kernel:           get("KERNEL"),
		ModulesDir:       get("MODULES_DIR"),
		Modules:          strings.Fields(get("MODULES")),
		Busybox:          get("BUSYBOX"),
		KernelPackage:    get("KERNEL_PACKAGE"),
		BusyboxPackage:   get("BUSYBOX_PACKAGE"),
		QEMUPackage:      get("QEMU_PACKAGE"),
		VirtiofsdPackage: get("VIRTIOFSD_PACKAGE"),
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the assets' env file lacks %s", strings.Join(missing, ", "))
	}
	return a, nil
}

// check verifies that the files the harness uses exist.
func (a *Assets) check() error {
	paths := []string{
		a.Kernel, a.Busybox,
		filepath.Join(a.Chroot, a.QEMU),
		filepath.Join(a.Chroot, a.Virtiofsd),
		filepath.Join(a.Chroot, a.ChrootMountpoint),
	}
	for _, m := range a.Modules {
		paths = append(paths, a.ModulePath(m))
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("asset missing (delete %s and rerun %s): %w", a.Cache, assetsScript, err)
		}
	}
	return nil
}

// ModulePath returns the host path of module m's .ko file.
func (a *Assets) ModulePath(m string) string {
	return filepath.Join(a.ModulesDir, m+".ko")
}

// String describes the assets' versions, for test logs.
func (a *Assets) String() string {
	return fmt.Sprintf("kernel %s, %s, %s, %s", a.KernelPackage, a.QEMUPackage, a.VirtiofsdPackage, a.BusyboxPackage)
}

// ModuleRoot returns the directory holding ferryfs's go.mod, found from the
// working directory upwards (go test runs in the package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/ferryfs/ferryfs\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of github.com/ferryfs/ferryfs above the working directory")
		}
		dir = parent
	}
}

// RequireVM skips t where VM tests cannot run: without root, or with
// -short. FERRYFS_REQUIRE_VM_TESTS=1 (or FERRYFS_REQUIRE_MOUNT_TESTS=1, which
// scripts/test-all.sh sets) makes that a failure, so CI cannot silently run
// none of them.
func RequireVM(t testing.TB) {
	t.Helper()
	var reason string
	switch {
	case os.Geteuid() != 0:
		reason = "VM tests need root (debootstrap, chroot, mount namespaces)"
	case testing.Short():
		reason = "VM tests take minutes; skipped with -short"
	default:
		return
	}
	for _, env := range []string{"FERRYFS_REQUIRE_VM_TESTS", "FERRYFS_REQUIRE_MOUNT_TESTS"} {
		if os.Getenv(env) == "1" {
			t.Fatalf("%s (and %s=1 forbids skipping)", reason, env)
		}
	}
	t.Skip(reason)
}
