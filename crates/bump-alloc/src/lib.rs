//! The channel components' allocator (WhatsApp and SMS), a bump allocator; on targets other
//! than wasm32 this crate is empty. Our host runs every call in a fresh instance
//! whose memory is discarded when the call returns, so blocks need not be given back one by
//! one: an allocation is a pointer increment, and the last block (the `String` or `Vec` being
//! built) grows or is freed in place. A few hundred bytes of code instead of dlmalloc's 8 KB,
//! and no bookkeeping on the hot path.
//!
//! A host that keeps one instance for many calls (jco, wasmtime-py, …) must not leak: the
//! allocator counts live blocks, and when the last one is freed — after a call's results
//! were taken back by its post-return — the whole heap is free again and starts over.
//! Memory still ends at the host's cap: a failed `memory.grow` is a null pointer, which Rust
//! turns into an abort the host reports.
//!
//! The heap begins at `__heap_base` and first fills the rest of the initial memory (the
//! component build gives the module 1 MiB: a 256 KiB stack, the data, the heap), so a typical
//! call never executes `memory.grow` — each growth costs a pooling host two `mprotect`s.

#![no_std]
#![cfg(target_arch = "wasm32")]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr::null_mut;

const PAGE: usize = 65_536;

unsafe extern "C" {
    /// Defined by `wasm-ld`: the first address above everything the module laid out.
    static __heap_base: u8;
}

fn heap_base() -> usize {
    // SAFETY: only the symbol's address is taken; nothing is read through it.
    unsafe { &raw const __heap_base as usize }
}

pub struct Bump {
    /// The next free byte (0 before the first allocation).
    next: Cell<usize>,
    /// The end of the memory claimed so far.
    end: Cell<usize>,
    /// Where the most recent allocation starts (it may grow or shrink in place).
    last: Cell<usize>,
    /// Where the heap starts.
    base: Cell<usize>,
    /// Blocks allocated and not yet freed.
    live: Cell<usize>,
}

// SAFETY: a component instance runs on one thread (wasm32 without the threads proposal).
unsafe impl Sync for Bump {}

impl Bump {
    pub const fn new() -> Bump {
        Bump {
            next: Cell::new(0),
            end: Cell::new(0),
            last: Cell::new(usize::MAX),
            base: Cell::new(0),
            live: Cell::new(0),
        }
    }

    /// Claims memory up to at least `need`; false if the host refuses to grow it.
    fn claim(&self, need: usize) -> bool {
        let pages = (need - self.end.get()).div_ceil(PAGE);
        if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
            return false;
        }
        self.end.set(self.end.get() + pages * PAGE);
        true
    }

    /// Whether `ptr` of `size` bytes is the most recent allocation, at the top.
    fn is_top(&self, ptr: usize, size: usize) -> bool {
        ptr == self.last.get() && ptr + size == self.next.get()
    }
}

impl Default for Bump {
    fn default() -> Self {
        Bump::new()
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.end.get() == 0 {
            // The heap starts where the linker's layout ends (`__heap_base`: above the stack,
            // data and bss) and first fills the rest of the initial memory; only then does it
            // grow the memory, from its top, which is ours alone.
            let base = heap_base();
            let top = core::arch::wasm32::memory_size(0) * PAGE;
            self.next.set(base);
            self.end.set(top.max(base));
            self.base.set(base);
        }
        let align = layout.align();
        let Some(start) = self
            .next
            .get()
            .checked_add(align - 1)
            .map(|a| a & !(align - 1))
        else {
            return null_mut();
        };
        let Some(end) = start.checked_add(layout.size()) else {
            return null_mut();
        };
        if end > self.end.get() && !self.claim(end) {
            return null_mut();
        }
        self.next.set(end);
        self.last.set(start);
        self.live.set(self.live.get() + 1);
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Only the top block comes back (a temporary freed right away); the rest goes with
        // the instance.
        if self.is_top(ptr as usize, layout.size()) {
            self.next.set(ptr as usize);
        }
        let live = self.live.get().saturating_sub(1);
        self.live.set(live);
        if live == 0 {
            // Nothing is in use any more: the whole heap is free.
            self.next.set(self.base.get());
            self.last.set(usize::MAX);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let at = ptr as usize;
        if self.is_top(at, layout.size()) {
            let Some(end) = at.checked_add(new_size) else {
                return null_mut();
            };
            if end <= self.end.get() || self.claim(end) {
                self.next.set(end);
                return ptr;
            }
            return null_mut();
        }
        // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`, fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live and distinct (the new one is above the old one).
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // The old block is dead now (it cannot be the top one: that case grew in place).
            self.live.set(self.live.get() - 1);
        }
        new
    }
}
