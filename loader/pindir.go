package loader

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PinInfo says where the fast path is pinned and whether the pins, and
// with them the answers to renewals, outlive the daemon.
type PinInfo struct {
	// Dir is the pin directory as configured.
	Dir string `json:"pin-dir"`
	// Via is the path the pins were made through when it is not Dir: the
	// host's bpffs reached through another process's root, from a mount
	// namespace of our own (`ip netns exec`, a container with a private
	// /sys).
	Via string `json:"via,omitempty"`
	// Persistent is set when the bpffs holding the pins is not one this
	// daemon mounted in a mount namespace that dies with it.
	Persistent bool `json:"pins-persistent"`
	// Why explains Persistent, for the log and `xdhcpctl stats`.
	Why string `json:"why"`
}

// pinDir is an opened, locked pin directory. The lock is an flock on the
// directory itself: bpffs holds no regular files, and the directory is
// the one thing two daemons sharing it both open, whatever their state
// directories or mount namespaces. The kernel drops the lock when the
// process exits, kill -9 included.
type pinDir struct {
	f    *os.File
	path string // where to make pins: Dir, or a path through f
	info PinInfo
}

func (d *pinDir) close() error { return d.f.Close() }

// ErrPinDirBusy is returned (wrapped) when another process holds the pin
// directory: a pin directory belongs to one daemon.
var ErrPinDirBusy = errors.New("pin directory in use")

// openPinDir finds the bpffs the pins go to, creates the directory and
// takes its lock. In order:
//   - a bpffs already mounted on the directory's parent here, which this
//     daemon did not mount and so does not take down with it;
//   - the same path under the root of a process in another mount
//     namespace (pid 1, then our nearest ancestor): `ip netns exec` gives
//     the daemon a fresh /sys without the host's bpffs, whose pins the
//     host keeps;
//   - a bpffs this daemon mounts on the parent: persistent only when this
//     is the host's mount namespace (pid 1's or our parent's); in a
//     namespace of our own it dies with the daemon, which says so.
func openPinDir(dir string, mount bool) (*pinDir, error) {
	path, info, err := locatePinDir(dir, mount)
	if err != nil {
		return nil, err
	}
	if mount {
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, fmt.Errorf("creating pin directory %s: %w", path, err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening pin directory %s: %w", path, err)
	}
	if err := lockDir(f, dir); err != nil {
		f.Close()
		return nil, err
	}
	d := &pinDir{f: f, path: path, info: info}
	if info.Via != "" {
		// The other process's root may go away (our parent exits); the
		// open directory does not.
		d.path = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	}
	return d, nil
}

// locatePinDir picks the path to pin dir through (see openPinDir),
// mounting a bpffs when there is none and mount is set; without mount a
// missing bpffs is fs.ErrNotExist.
func locatePinDir(dir string, mount bool) (string, PinInfo, error) {
	parent := filepath.Dir(dir)
	info := PinInfo{Dir: dir}
	if isBPFFS(parent) {
		info.Persistent = true
		info.Why = parent + " is a bpffs this daemon did not mount"
		return dir, info, nil
	}
	if root, ok := hostRoot(); ok && isBPFFS(root+parent) {
		info.Via = root + dir
		info.Persistent = true
		info.Why = fmt.Sprintf("%s is not a bpffs in this mount namespace; pinned in the host's, through %s", parent, root)
		return root + dir, info, nil
	}
	if !mount {
		return "", info, fmt.Errorf("no bpffs on %s here or in the host's mount namespace: %w", parent, fs.ErrNotExist)
	}
	if err := unix.Mount("bpf", parent, "bpf", 0, "mode=0700"); err != nil {
		return "", info, fmt.Errorf("%s is not a bpffs and mounting one there failed: %w", parent, err)
	}
	switch host, known := inHostMountNS(); {
	case host:
		info.Persistent = true
		info.Why = "mounted a bpffs on " + parent + " in the host's mount namespace"
	case known:
		info.Why = "mounted a bpffs of its own on " + parent + " in a private mount namespace (ip netns exec, or a container's private /sys) and no host bpffs is reachable: the pins die with the daemon"
	default:
		info.Why = "mounted a bpffs of its own on " + parent + " and cannot tell whether this mount namespace outlives the daemon (no other process's namespace is readable): assuming the pins die with it"
	}
	return dir, info, nil
}

// lockDir takes f's exclusive flock, or names who holds it.
func lockDir(f *os.File, name string) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("locking pin directory %s: %w", name, err)
	}
	owner := "another process"
	if pid := lockOwner(f); pid > 0 {
		owner = fmt.Sprintf("process %d", pid)
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && len(b) > 0 {
			owner += " (" + strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")) + ")"
		}
	}
	return fmt.Errorf("%w: %s is held by %s; each xdhcpd needs its own fastpath.pin-dir (or stop that one first)", ErrPinDirBusy, name, owner)
}

// lockOwner finds the pid holding an flock on f's inode in /proc/locks
// (0 when it cannot tell: the holder is in another pid namespace, or the
// lock went away meanwhile).
func lockOwner(f *os.File) int {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0
	}
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	lf, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer lf.Close()
	sc := bufio.NewScanner(lf)
	for sc.Scan() {
		// "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"
		cols := strings.Fields(sc.Text())
		if len(cols) >= 6 && cols[1] == "FLOCK" && cols[5] == want {
			if pid, err := strconv.Atoi(cols[4]); err == nil {
				return pid
			}
		}
	}
	return 0
}

func isBPFFS(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// hostRoot returns the root directory of a process in another mount
// namespace than ours: pid 1's, else our nearest ancestor's (where
// `ip netns exec` was run from). None when we share theirs (then our
// paths are theirs) or cannot read them.
func hostRoot() (string, bool) {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return "", false
	}
	for _, pid := range candidates() {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		if err != nil || ns == self {
			continue
		}
		root := fmt.Sprintf("/proc/%d/root", pid)
		if _, err := os.Stat(root + "/"); err == nil {
			return root, true
		}
	}
	return "", false
}

// inHostMountNS reports whether our mount namespace is pid 1's or, when
// that is not readable, our nearest readable ancestor's; known is false
// when none is readable.
func inHostMountNS() (host, known bool) {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return false, false
	}
	for _, pid := range candidates() {
		if pid == os.Getpid() {
			continue // pid 1 of a container: its namespace dies with us
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil {
			return ns == self, true
		}
	}
	return false, false
}

// candidates are pid 1 and then our ancestors, nearest first.
func candidates() []int {
	out := []int{1}
	for pid, n := os.Getppid(), 0; pid > 1 && n < 64; n++ {
		out = append(out, pid)
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			break
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parens.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			break
		}
		cols := strings.Fields(s[i+1:])
		if len(cols) < 2 {
			break
		}
		if pid, err = strconv.Atoi(cols[1]); err != nil {
			break
		}
	}
	return out
}

// Pinned reports whether a pin directory exists for dir, looking where
// Load would pin (the host's bpffs too, from a mount namespace without
// one), and the path it was found at.
func Pinned(dir string) (string, bool) {
	if dir == "" {
		dir = DefaultPinDir
	}
	path, _, err := locatePinDir(dir, false)
	if err != nil {
		return "", false
	}
	if _, err := os.Stat(path); err != nil {
		return "", false
	}
	return path, true
}
