//! Keeping the resident set close to what is live (glibc malloc only).
//!
//! A pass builds and drops large transient structures (the declared entries, the plan, a
//! SPIRE list). With glibc's default of up to 8 arenas per core, and freed pages kept
//! in them, the resident set grows to several times the live heap. Two arenas and a trim
//! after each pass keep it near the live size.
//!
//! The one module allowed `unsafe` (two libc calls that only tune the allocator).
#![allow(unsafe_code)]

/// At most two malloc arenas (before any thread starts).
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns freed heap pages to the kernel.
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
