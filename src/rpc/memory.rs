//! Giving memory back after large frames. A 15 MiB request is parsed into several copies of itself; the allocator
//! keeps the freed pages in its arenas unless told otherwise, so one large frame would raise the engine's resident
//! size for good.

/// Frames above this size release memory once handled.
pub const LARGE: usize = 1024 * 1024;

/// Returns the allocator's free pages to the kernel.
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it is thread-safe and has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
