//! Landlock, through its three system calls. The ruleset is built in the engine, where allocating and opening
//! files is safe; the child only calls `prctl` and `landlock_restrict_self` between fork and exec, both
//! async-signal-safe.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: u32 = 1;

pub const EXECUTE: u64 = 1 << 0;
pub const WRITE_FILE: u64 = 1 << 1;
pub const READ_FILE: u64 = 1 << 2;
pub const READ_DIR: u64 = 1 << 3;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;
/// Rights that a rule on a file (not a directory) may carry.
const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The kernel's Landlock ABI version, or `None` where Landlock is missing or disabled.
pub fn abi() -> Option<u32> {
    // SAFETY: with a null attribute and the VERSION flag, the call only returns a number.
    let version =
        unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0, CREATE_RULESET_VERSION) };
    u32::try_from(version).ok().filter(|v| *v >= 1)
}

/// Every filesystem right the running kernel knows, so that none is left unrestricted.
pub fn all_fs_rights(abi: u32) -> u64 {
    let mut rights = (1 << 13) - 1;
    if abi >= 2 {
        rights |= 1 << 13; // REFER
    }
    if abi >= 3 {
        rights |= TRUNCATE;
    }
    if abi >= 5 {
        rights |= IOCTL_DEV;
    }
    rights
}

/// A ruleset being built: rules are added in the engine, then `Ruleset::enforce` runs in the child.
pub struct Ruleset {
    fd: OwnedFd,
    handled: u64,
}

impl Ruleset {
    pub fn new(abi: u32, deny_network: bool) -> std::io::Result<Self> {
        let handled = all_fs_rights(abi);
        let attr = RulesetAttr {
            handled_access_fs: handled,
            handled_access_net: if deny_network && abi >= 4 { NET_BIND_TCP | NET_CONNECT_TCP } else { 0 },
            scoped: 0,
        };
        // Older kernels reject an attribute larger than they know unless the extra fields are zero; sending
        // only what this ABI has is the documented way.
        let size = if abi >= 4 { 16 } else { 8 };
        // SAFETY: `attr` is a valid, initialised struct of at least `size` bytes.
        let fd = unsafe {
            libc::syscall(libc::SYS_landlock_create_ruleset, &attr as *const RulesetAttr, size as libc::size_t, 0u32)
        };
        let fd = RawFd::try_from(fd).map_err(|_| std::io::Error::other("bad ruleset descriptor"))?;
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) }, handled })
    }

    /// Allows `rights` beneath `path`. A path that does not exist is skipped: nothing there to allow.
    pub fn allow(&mut self, path: &Path, rights: u64) -> std::io::Result<()> {
        let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else { return Ok(()) };
        // SAFETY: a valid C string; O_PATH opens nothing but a handle on the inode.
        let raw = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if raw < 0 {
            return Ok(());
        }
        // SAFETY: `raw` was just opened and is owned here.
        let target = unsafe { OwnedFd::from_raw_fd(raw) };
        let is_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
        let mut allowed = rights & self.handled;
        if !is_dir {
            allowed &= FILE_RIGHTS;
        }
        if allowed == 0 {
            return Ok(());
        }
        let attr = PathBeneathAttr { allowed_access: allowed, parent_fd: target.as_raw_fd() };
        // SAFETY: both descriptors are open and `attr` is a valid, packed struct as the kernel expects.
        let done = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0u32,
            )
        };
        if done < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn handled(&self) -> u64 {
        self.handled
    }

    /// The descriptor the child enforces; it stays open until the command has started.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Restricts the calling process. Runs in the forked child before exec: system calls only, no allocation.
pub fn enforce(ruleset_fd: RawFd) -> std::io::Result<()> {
    // SAFETY: plain system calls with integer arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_landlock_restrict_self, ruleset_fd, 0u32) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
