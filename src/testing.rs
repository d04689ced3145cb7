//! Hooks for the project's own tests. Not part of the API: hidden from the
//! docs, and free to change in any release.

pub use crate::layout::{IdentityFields, HEADER_BYTES, MAGIC};
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes of the header the layout defines (the rest, up to
/// [`HEADER_BYTES`], is reserved).
pub const HEADER_SIZE: u64 = std::mem::size_of::<crate::layout::SegmentHeader>() as u64;
use std::sync::RwLock;

/// Called after every completed `msync(MS_SYNC)` of a file segment with the
/// segment's name, the file offset of the first byte written back, and the
/// bytes as they were right after it returned.
pub type WriteBackHook = Box<dyn Fn(&str, u64, &[u8]) + Send + Sync>;

static INSTALLED: AtomicBool = AtomicBool::new(false);
static HOOK: RwLock<Option<WriteBackHook>> = RwLock::new(None);

/// Installs (or, with `None`, removes) the process-wide write-back hook. The
/// crash simulator of the durability tests records with it what the disk
/// holds of each page.
pub fn set_write_back_hook(hook: Option<WriteBackHook>) {
    let mut slot = HOOK.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    INSTALLED.store(hook.is_some(), Ordering::Release);
    *slot = hook;
}

/// Whether a hook is installed (one relaxed load when none is).
pub(crate) fn write_back_hooked() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

/// Hands a completed write-back to the hook, if one is installed.
pub(crate) fn written_back(name: &str, offset: u64, bytes: &[u8]) {
    let hook = HOOK.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(hook) = hook.as_ref() {
        hook(name, offset, bytes);
    }
}
