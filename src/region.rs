//! The data region: `capacity` bytes the ring frames records in.
//!
//! Normally a window of a shared mapping, reached through a raw pointer.
//! Under loom it is heap memory in which every 8-byte word is an atomic (for
//! its role as a commit word) paired with a `loom::cell::UnsafeCell` that every
//! payload access goes through, so loom reports a data race when a reader can
//! touch payload bytes before the writer published them.
//!
//! Every access is bounds-checked or masked here, so no value read from shared
//! memory can make the ring touch memory outside the region.

use crate::sync::AtomicU64;
use std::mem::MaybeUninit;

pub use imp::Region;
pub(crate) use imp::{View, ViewMut};

impl Region {
    /// Whether `len` bytes at `offset` lie inside the region.
    pub(crate) fn fits(&self, offset: usize, len: usize) -> bool {
        offset <= self.len() && len <= self.len() - offset
    }

    /// Zeroes the bytes of positions `from..to` (at most a lap), in two
    /// pieces if they wrap.
    pub(crate) fn zero_positions(&self, from: u64, to: u64) {
        for (offset, len) in crate::record::region_pieces(from, to, self.len() as u64) {
            let zeroed = self.zero(offset as usize, len as usize);
            debug_assert!(zeroed, "a range inside one lap lies inside the region");
        }
    }
}

/// Whether a handle has a view of the region counted as lent (see
/// `Region::lend`): at most one count per handle, however many of its
/// guards were leaked.
#[derive(Debug, Default)]
pub(crate) struct LentView(bool);

impl LentView {
    /// Counts a view lent from `region`, unless one is counted already.
    #[inline]
    pub(crate) fn lend(&mut self, region: &Region) {
        if !self.0 {
            region.lend();
            self.0 = true;
        }
    }

    /// Ends the count, if there is one.
    #[inline]
    pub(crate) fn give_back(&mut self, region: &Region) {
        if self.0 {
            region.unlend();
            self.0 = false;
        }
    }

    /// Whether a view is counted.
    #[inline(always)]
    pub(crate) fn is_lent(&self) -> bool {
        self.0
    }
}

#[cfg(not(shmring_loom))]
mod imp {
    use super::{AtomicU64, MaybeUninit};
    use crate::sync::{AtomicU32, Ordering};
    use std::ptr::NonNull;

    /// The ring's data region.
    #[derive(Debug)]
    pub struct Region {
        base: NonNull<u8>,
        len: usize,
        /// Where views lent in place are counted (see [`lend`](Self::lend)).
        lent: Option<NonNull<AtomicU32>>,
    }

    // SAFETY: a Region is a pointer to shared memory whose validity does not
    // depend on the thread using it (see `from_raw`); moving it to another
    // thread is as sound as moving the mapping.
    unsafe impl Send for Region {}

    impl Region {
        /// # Safety
        /// `base .. base + len` must stay mapped readable and writable for as
        /// long as the `Region` exists; `base` must be 8-byte aligned and `len`
        /// a power of two of at least 8. `lent`, if any, must outlive the
        /// `Region`.
        pub unsafe fn from_raw(base: NonNull<u8>, len: usize, lent: Option<&AtomicU32>) -> Region {
            debug_assert!(len.is_power_of_two() && len >= 8);
            debug_assert_eq!(base.as_ptr() as usize % 8, 0);
            Region { base, len, lent: lent.map(NonNull::from) }
        }

        /// Counts a view lent in place, until [`unlend`](Self::unlend), where
        /// a fork can see it (a child forked meanwhile gets a copy of the
        /// region's bytes instead of zeros, so the view never changes). Only
        /// the handle that owns the region lends from it: a load and a store
        /// of a word of this process, no read-modify-write.
        #[inline(always)]
        pub(crate) fn lend(&self) {
            if let Some(count) = self.lent {
                // SAFETY: `from_raw`'s caller keeps the count alive as long
                // as the region.
                let count = unsafe { count.as_ref() };
                count.store(count.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
            }
        }

        /// Ends a view counted by [`lend`](Self::lend).
        #[inline(always)]
        pub(crate) fn unlend(&self) {
            if let Some(count) = self.lent {
                // SAFETY: as in `lend`.
                let count = unsafe { count.as_ref() };
                count.store(count.load(Ordering::Relaxed).wrapping_sub(1), Ordering::Relaxed);
            }
        }

        /// The region's size in bytes.
        pub fn len(&self) -> usize {
            self.len
        }

        /// The 8-byte word that covers byte `index` modulo the region size.
        /// Masking, not a check: any index is in bounds by construction.
        #[inline(always)]
        pub(crate) fn word(&self, index: u64) -> &AtomicU64 {
            let offset = (index as usize) & (self.len - 1) & !7;
            // SAFETY: `offset + 8 <= len` (len is a power of two >= 8 and
            // offset is 8-aligned below it), the base is 8-aligned, and the
            // memory is mapped for our lifetime (`from_raw`). An AtomicU64 may
            // alias bytes other processes write: atomics never data-race.
            unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU64>() }
        }

        fn in_bounds(&self, offset: usize, len: usize) -> bool {
            offset <= self.len && len <= self.len - offset
        }

        /// Copy `src` into the region at `offset`. False if out of bounds.
        #[inline]
        pub(crate) fn write(&self, offset: usize, src: &[u8]) -> bool {
            if !self.in_bounds(offset, src.len()) {
                return false;
            }
            // SAFETY: in bounds (checked above) of memory mapped for our
            // lifetime; `src` is process-local so cannot overlap the mapping's
            // bytes we are about to write unless the caller passed a view of
            // the ring itself, which `copy` (memmove) also handles.
            unsafe { std::ptr::copy(src.as_ptr(), self.base.as_ptr().add(offset), src.len()) };
            true
        }

        /// Copy the `dst.len()` bytes at `offset` into `dst`, which need not
        /// be initialised. False if out of bounds. As
        /// [`append_to`](Self::append_to), no reference to the shared bytes
        /// is formed.
        #[inline]
        pub(crate) fn read_uninit(&self, offset: usize, dst: &mut [MaybeUninit<u8>]) -> bool {
            if !self.in_bounds(offset, dst.len()) {
                return false;
            }
            // SAFETY: the source is in bounds (checked above) of memory mapped
            // for our lifetime, the destination is `dst`, valid for
            // `dst.len()` bytes of writes (any bytes are valid `MaybeUninit`).
            // `dst` could be a grant's view of this very mapping, so `copy`
            // (memmove) rather than `copy_nonoverlapping`.
            unsafe { std::ptr::copy(self.base.as_ptr().add(offset), dst.as_mut_ptr().cast::<u8>(), dst.len()) };
            true
        }

        /// Append the `len` bytes at `offset` to `dst` (one copy: no zeroing
        /// of `dst` first). False if out of bounds.
        ///
        /// The bytes are copied from a raw pointer into `dst`'s own memory:
        /// no reference to the shared bytes is ever formed, so the compiler
        /// is never told they are stable, and a peer that writes them
        /// meanwhile puts garbage in `dst`. (A peer's write is outside what
        /// Rust's memory model describes; within one process, where the
        /// protocol keeps every writer off these bytes, there is no race.
        /// Volatile or atomic word copies would make even a hostile peer's
        /// write a defined race, at a cost on every message.)
        #[inline]
        pub(crate) fn append_to(&self, offset: usize, len: usize, dst: &mut Vec<u8>) -> bool {
            if !self.in_bounds(offset, len) {
                return false;
            }
            dst.reserve(len);
            let filled = dst.len();
            // SAFETY: the source is in bounds of memory mapped for our
            // lifetime; the destination is `len` bytes of `dst`'s spare
            // capacity (reserved above), process-local, so the two do not
            // overlap. `copy_nonoverlapping` reads through raw pointers; the
            // bytes it writes are initialised before `set_len` covers them.
            unsafe {
                std::ptr::copy_nonoverlapping(self.base.as_ptr().add(offset), dst.as_mut_ptr().add(filled), len);
                dst.set_len(filled + len);
            }
            true
        }

        /// Zero `len` bytes at `offset`. False if out of bounds.
        pub(crate) fn zero(&self, offset: usize, len: usize) -> bool {
            if !self.in_bounds(offset, len) {
                return false;
            }
            // SAFETY: in bounds of memory mapped for our lifetime.
            unsafe { std::ptr::write_bytes(self.base.as_ptr().add(offset), 0, len) };
            true
        }

        /// A borrowed view of `len` bytes at `offset`.
        ///
        /// # Safety
        /// The ring protocol must give the caller these bytes for as long as the
        /// view lives (`'a`, which the caller chooses): no handle of this
        /// process writes them meanwhile, and the mapping outlives `'a`. And
        /// no other process may write them either: every process that can
        /// write the segment must be trusted to keep the protocol (the trust
        /// rule: see `Consumer::set_borrow_in_place`).
        #[inline]
        pub(crate) unsafe fn view<'a>(&self, offset: usize, len: usize) -> Option<View<'a>> {
            if !self.in_bounds(offset, len) {
                return None;
            }
            // SAFETY: in bounds of memory mapped for our lifetime; the caller
            // guarantees that nobody, in this process or another, writes
            // these bytes while the view lives.
            Some(View(unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset), len) }))
        }

        /// A writable view of `len` bytes at `offset`.
        ///
        /// # Safety
        /// The ring protocol must give the caller these bytes exclusively for as
        /// long as the view lives (`'a`, which the caller chooses): no other view
        /// of them exists in this process, no other process writes them (the
        /// trust rule, as for [`view`](Self::view)), and the mapping outlives
        /// `'a`.
        #[inline]
        pub(crate) unsafe fn view_mut<'a>(&self, offset: usize, len: usize) -> Option<ViewMut<'a>> {
            if !self.in_bounds(offset, len) {
                return None;
            }
            // SAFETY: in bounds; exclusivity, in this process and against
            // other processes, is the caller's guarantee (a claimed,
            // uncommitted range of a segment whose writers are trusted).
            Some(ViewMut(unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(offset), len) }))
        }
    }

    /// Borrowed payload bytes.
    #[derive(Debug)]
    pub(crate) struct View<'a>(&'a [u8]);

    impl std::ops::Deref for View<'_> {
        type Target = [u8];
        #[inline(always)]
        fn deref(&self) -> &[u8] {
            self.0
        }
    }

    /// Writable payload bytes of a claimed record.
    #[derive(Debug)]
    pub(crate) struct ViewMut<'a>(&'a mut [u8]);

    impl ViewMut<'_> {
        /// Make the first `len` written bytes part of the region (a no-op:
        /// they are written in place).
        #[inline(always)]
        pub(crate) fn flush_into(&mut self, _region: &Region, _offset: usize, _len: usize) {}
    }

    impl std::ops::Deref for ViewMut<'_> {
        type Target = [u8];
        fn deref(&self) -> &[u8] {
            self.0
        }
    }

    impl std::ops::DerefMut for ViewMut<'_> {
        fn deref_mut(&mut self) -> &mut [u8] {
            self.0
        }
    }
}

#[cfg(shmring_loom)]
mod imp {
    use super::{AtomicU64, MaybeUninit};
    use crate::sync::Ordering;
    use loom::cell::UnsafeCell;

    /// One 8-byte word of the modelled region. `value` is the word as atomics
    /// see it (commit words, terminators, and payload bytes too, so a stale
    /// payload later polled as a header reads as it would in real memory);
    /// `payload` is the same bytes as payload reads see them, and the cell loom
    /// tracks for data races.
    #[derive(Debug)]
    struct Word {
        value: AtomicU64,
        payload: UnsafeCell<[u8; 8]>,
    }

    /// The ring's data region, as loom-tracked heap memory.
    #[derive(Debug)]
    pub struct Region {
        words: Box<[Word]>,
    }

    impl Region {
        /// A zeroed region of `len` bytes (a power of two of at least 8).
        pub fn new_heap(len: usize) -> Region {
            assert!(len.is_power_of_two() && len >= 8);
            let words =
                (0..len / 8).map(|_| Word { value: AtomicU64::new(0), payload: UnsafeCell::new([0; 8]) }).collect();
            Region { words }
        }

        /// The region's size in bytes.
        pub fn len(&self) -> usize {
            self.words.len() * 8
        }

        /// Nothing to count under loom (no fork).
        pub(crate) fn lend(&self) {}

        /// Nothing to count under loom (no fork).
        pub(crate) fn unlend(&self) {}

        pub(crate) fn word(&self, index: u64) -> &AtomicU64 {
            &self.words[(index as usize / 8) & (self.words.len() - 1)].value
        }

        /// The words covering `len` bytes at the 8-aligned `offset` (the ring
        /// only moves payloads at record offset + 8).
        fn words(&self, offset: usize, len: usize) -> Option<&[Word]> {
            assert_eq!(offset % 8, 0, "the model moves payloads by whole words");
            if offset > self.len() || len > self.len() - offset {
                return None;
            }
            Some(&self.words[offset / 8..(offset + len).div_ceil(8)])
        }

        /// Whole words are written (the tail of the last one is record
        /// padding), so no old value is read and loom explores no extra
        /// branches for it.
        pub(crate) fn write(&self, offset: usize, src: &[u8]) -> bool {
            let Some(words) = self.words(offset, src.len()) else { return false };
            for (word, chunk) in words.iter().zip(src.chunks(8)) {
                let mut bytes = [0u8; 8];
                bytes[..chunk.len()].copy_from_slice(chunk);
                // SAFETY: loom's pointer to the cell is valid for the closure;
                // loom itself checks that no other access races with this one.
                word.payload.with_mut(|cell| unsafe { *cell = bytes });
                word.value.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
            }
            true
        }

        pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) -> bool {
            let Some(words) = self.words(offset, dst.len()) else { return false };
            for (word, chunk) in words.iter().zip(dst.chunks_mut(8)) {
                // SAFETY: as in `write`; loom checks this read for races.
                let bytes = word.payload.with(|cell| unsafe { *cell });
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            true
        }

        pub(crate) fn read_uninit(&self, offset: usize, dst: &mut [MaybeUninit<u8>]) -> bool {
            let mut copy = vec![0; dst.len()];
            if !self.read(offset, &mut copy) {
                return false;
            }
            for (to, from) in dst.iter_mut().zip(copy) {
                to.write(from);
            }
            true
        }

        pub(crate) fn append_to(&self, offset: usize, len: usize, dst: &mut Vec<u8>) -> bool {
            let start = dst.len();
            dst.resize(start + len, 0);
            self.read(offset, &mut dst[start..])
        }

        pub(crate) fn zero(&self, offset: usize, len: usize) -> bool {
            self.write(offset, &vec![0; len])
        }

        /// # Safety
        /// None under loom (kept `unsafe` to match the real region).
        pub(crate) unsafe fn view<'a>(&self, offset: usize, len: usize) -> Option<View<'a>> {
            let mut copy = vec![0; len];
            self.read(offset, &mut copy).then_some(View(copy, std::marker::PhantomData))
        }

        /// # Safety
        /// None under loom (kept `unsafe` to match the real region).
        pub(crate) unsafe fn view_mut<'a>(&self, offset: usize, len: usize) -> Option<ViewMut<'a>> {
            // A fresh staging buffer: the grant's initial contents are
            // unspecified, and reading the old bytes would be a spurious access.
            self.words(offset, len).map(|_| ViewMut(vec![0; len], std::marker::PhantomData))
        }
    }

    /// Payload bytes, copied out of the model at the moment of the read.
    #[derive(Debug)]
    pub(crate) struct View<'a>(Vec<u8>, std::marker::PhantomData<&'a ()>);

    impl std::ops::Deref for View<'_> {
        type Target = [u8];
        fn deref(&self) -> &[u8] {
            &self.0
        }
    }

    /// A staging copy of a claimed record's payload, written into the model
    /// just before the record is committed.
    #[derive(Debug)]
    pub(crate) struct ViewMut<'a>(Vec<u8>, std::marker::PhantomData<&'a ()>);

    impl ViewMut<'_> {
        pub(crate) fn flush_into(&mut self, region: &Region, offset: usize, len: usize) {
            region.write(offset, &self.0[..len.min(self.0.len())]);
        }
    }

    impl std::ops::Deref for ViewMut<'_> {
        type Target = [u8];
        fn deref(&self) -> &[u8] {
            &self.0
        }
    }

    impl std::ops::DerefMut for ViewMut<'_> {
        fn deref_mut(&mut self) -> &mut [u8] {
            &mut self.0
        }
    }
}
