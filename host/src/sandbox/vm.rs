//! Linear memories and fiber stacks that cost the kernel as few memory
//! mappings as possible, so that tens of thousands of runs can be parked
//! (waiting for the owner's answer) with the kernel's default
//! `vm.max_map_count` (65,530).
//!
//! wasmtime's defaults reserve 4 GiB plus guard regions per linear memory and
//! give each fiber stack a `PROT_NONE` guard page: about seven mappings per
//! run, which caps a host at ~9,000 live runs whatever its RAM. Here:
//!
//! - A linear memory is one anonymous read-write mapping of exactly its size,
//!   moved with `mremap` when it grows. Without a reservation or guard region
//!   the compiled code bounds-checks every access explicitly (the engine is
//!   configured so: `memory_reservation(0)`, `memory_guard_size(0)`).
//! - A fiber stack is one anonymous read-write mapping whose lowest page is a
//!   guard installed with `MADV_GUARD_INSTALL` (Linux 6.13+): any access to it
//!   raises `SIGSEGV` like a `PROT_NONE` page, but it lives in the page
//!   tables, not in a mapping of its own. On an older kernel the guard page
//!   is made `PROT_NONE` (one more mapping per stack).
//!
//! Mappings with the same flags that touch are merged by the kernel, so
//! neighbouring memories and stacks share mappings. Fresh anonymous pages are
//! zero and cost no RAM until touched.
//!
//! Running out (the kernel refuses a mapping) is the host's capacity, never
//! the connector's fault: the error is [`OutOfCapacity`].

use std::ops::Range;
use std::ptr;
use wasmtime::{LinearMemory, MemoryCreator, MemoryType, StackCreator, StackMemory};

/// The host could not give a run the memory or stack it needs (the kernel
/// refused a mapping). Classified as the host's capacity, not the guest's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the host is out of capacity: {0}")]
pub struct OutOfCapacity(pub String);

/// `MADV_GUARD_INSTALL` (linux/mman.h, since 6.13); not yet in the libc crate.
const MADV_GUARD_INSTALL: libc::c_int = 102;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

fn round_up(n: usize, page: usize) -> Option<usize> {
    Some(n.checked_add(page - 1)? & !(page - 1))
}

/// One fresh anonymous read-write mapping of `len` bytes (zero-filled).
fn map(len: usize) -> std::io::Result<*mut u8> {
    // SAFETY: a new private anonymous mapping at an address the kernel picks
    // aliases nothing.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // A parked run touches a few pages here and there; with transparent huge
    // pages set to `always`, khugepaged would back them with 2 MiB pages.
    // (Every mapping of ours carries the flag, so they still merge.)
    // SAFETY: advice on our own fresh mapping; failure changes nothing.
    unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
    Ok(p.cast())
}

fn capacity_error(what: &str, len: usize, e: std::io::Error) -> OutOfCapacity {
    OutOfCapacity(format!(
        "cannot map {len} bytes of {what} ({e}; see vm.max_map_count and [capacity] max_live_runs)"
    ))
}

/// Creates every linear memory of every run (the engine's memory creator).
pub(super) struct LeanMemories;

// SAFETY: the memories returned are zero-filled, owned by the instance, and
// ignore the reservation and guard arguments only when both are zero (the
// engine is configured without them, so the compiled code bounds-checks
// explicitly and expects the base to move on growth).
unsafe impl MemoryCreator for LeanMemories {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        _maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        if reserved_size_in_bytes.is_some_and(|r| r > 0) || guard_size_in_bytes > 0 {
            return Err("this engine's memories have no reservation or guard region".into());
        }
        let page = page_size();
        let mapped = round_up(minimum.max(1), page).ok_or("memory size overflows")?;
        let base = map(mapped).map_err(|e| capacity_error("linear memory", mapped, e).to_string())?;
        Ok(Box::new(LeanMemory {
            base,
            mapped,
            size: minimum,
            page,
        }))
    }
}

struct LeanMemory {
    base: *mut u8,
    /// Bytes mapped (a whole number of pages, at least one).
    mapped: usize,
    /// Bytes the guest may access.
    size: usize,
    page: usize,
}

// SAFETY: the mapping is owned by this value alone; wasmtime serialises access.
unsafe impl Send for LeanMemory {}
// SAFETY: as above: no interior mutability without `&mut self`.
unsafe impl Sync for LeanMemory {}

// SAFETY: `as_ptr` points at `byte_capacity` mapped, zero-initialised bytes;
// growth keeps the contents (mremap moves pages, it does not copy or clear).
unsafe impl LinearMemory for LeanMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.mapped
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if new_size <= self.mapped {
            self.size = self.size.max(new_size);
            return Ok(());
        }
        let want = round_up(new_size, self.page).ok_or_else(|| wasmtime::Error::msg("memory size overflows"))?;
        // SAFETY: `base..base+mapped` is this value's own mapping; with
        // MREMAP_MAYMOVE the kernel may move it, and `base` is replaced.
        let p = unsafe { libc::mremap(self.base.cast(), self.mapped, want, libc::MREMAP_MAYMOVE) };
        if p == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            return Err(wasmtime::Error::new(capacity_error("linear memory", want, e)));
        }
        self.base = p.cast();
        self.mapped = want;
        self.size = new_size;
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base
    }
}

impl Drop for LeanMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping is this value's and nothing refers to it anymore.
        unsafe { libc::munmap(self.base.cast(), self.mapped) };
    }
}

/// Creates every async fiber stack (the engine's stack creator).
pub(super) struct GuardedStacks;

// SAFETY: each stack is page aligned, zero-filled, and has a guard page at
// its bottom that faults on any access.
unsafe impl StackCreator for GuardedStacks {
    fn new_stack(&self, size: usize, _zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        let page = page_size();
        let len = round_up(size, page)
            .and_then(|s| s.checked_add(page))
            .ok_or_else(|| wasmtime::Error::msg("stack size overflows"))?;
        let base = map(len).map_err(|e| wasmtime::Error::new(capacity_error("fiber stack", len, e)))?;
        let stack = GuardedStack { base, len, guard: page };
        // SAFETY: the first page of our own fresh mapping.
        let guarded = unsafe { libc::madvise(base.cast(), page, MADV_GUARD_INSTALL) } == 0
            || unsafe { libc::mprotect(base.cast(), page, libc::PROT_NONE) } == 0;
        if !guarded {
            let e = std::io::Error::last_os_error();
            return Err(wasmtime::Error::new(capacity_error("stack guard page", page, e)));
        }
        Ok(Box::new(stack))
    }
}

struct GuardedStack {
    base: *mut u8,
    len: usize,
    guard: usize,
}

// SAFETY: the mapping is owned by this value; wasmtime runs one fiber on it.
unsafe impl Send for GuardedStack {}
// SAFETY: as above; the value itself is immutable.
unsafe impl Sync for GuardedStack {}

// SAFETY: top/range/guard_range describe this value's own mapping.
unsafe impl StackMemory for GuardedStack {
    fn top(&self) -> *mut u8 {
        self.base.wrapping_add(self.len)
    }

    fn range(&self) -> Range<usize> {
        let base = self.base as usize;
        base + self.guard..base + self.len
    }

    fn guard_range(&self) -> Range<*mut u8> {
        self.base..self.base.wrapping_add(self.guard)
    }
}

impl Drop for GuardedStack {
    fn drop(&mut self) {
        // SAFETY: the mapping is this value's; the fiber on it has ended.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lean_memory_keeps_its_contents_and_zeroes_what_it_grows() {
        let mut m = LeanMemories
            .new_memory(MemoryType::new(1, None), 65536, None, None, 0)
            .expect("memory");
        // SAFETY: within the 64 KiB just mapped.
        unsafe { *m.as_ptr().add(100) = 7 };
        m.grow_to(4 * 65536).expect("grows");
        assert_eq!(m.byte_size(), 4 * 65536);
        // SAFETY: within the grown mapping.
        unsafe {
            assert_eq!(*m.as_ptr().add(100), 7, "contents survive a move");
            assert_eq!(*m.as_ptr().add(3 * 65536 + 5), 0, "new pages are zero");
        }
    }

    #[test]
    fn a_memory_with_a_reservation_or_guard_is_refused() {
        assert!(
            LeanMemories
                .new_memory(MemoryType::new(1, None), 65536, None, Some(1 << 20), 0)
                .is_err()
        );
    }
}
