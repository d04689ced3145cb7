//! The crash simulator shared by `crash.rs` and `adversarial_durable.rs`:
//! through the library's write-back hook it records, per file and page, what
//! the disk held when an `msync(MS_SYNC)` covering the page last completed,
//! and it builds the file a crash could leave (each page its last-synced or
//! its current content) with a foreign boot id.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

pub const PAGE: usize = 4096;
/// Pages of the header (the data region starts at 12 KiB).
pub const HEADER_PAGES: usize = 3;
/// Where the header keeps the boot id (layout version 5: the persistence
/// line at 128 + 9856, the boot id 8 bytes into it).
pub const BOOT_ID_AT: u64 = 128 + 9856 + 8;

/// Per file (by path), the last-synced content of each page.
type Disks = HashMap<String, BTreeMap<usize, Vec<u8>>>;

fn disks() -> &'static Arc<Mutex<Disks>> {
    static DISKS: OnceLock<Arc<Mutex<Disks>>> = OnceLock::new();
    DISKS.get_or_init(|| {
        let disks: Arc<Mutex<Disks>> = Arc::default();
        let recorder = Arc::clone(&disks);
        shmring::testing::set_write_back_hook(Some(Box::new(move |name, offset, bytes| {
            let mut disks = recorder.lock().unwrap_or_else(|p| p.into_inner());
            let Some(pages) = disks.get_mut(name) else { return };
            // The bytes handed to the hook were copied before this lock: two
            // racing write-backs of one page could be recorded in the wrong
            // order (the older copy last). Re-read the pages under the lock
            // instead: content at a time after the write-back, recorded in
            // the order of those times.
            let mut fresh = vec![0u8; bytes.len()];
            let file = std::fs::File::open(name).expect("open for the hook");
            file.read_exact_at(&mut fresh, offset).expect("read for the hook");
            let first = offset as usize / PAGE;
            for (i, page) in fresh.chunks(PAGE).enumerate() {
                pages.insert(first + i, page.to_vec());
            }
        })));
        disks
    })
}

/// Starts recording the writes-back of the file at `path` (before it is
/// created, so the creation's own write-back is recorded).
pub fn track(path: &Path) {
    disks().lock().unwrap().insert(path.to_string_lossy().into_owned(), BTreeMap::new());
}

pub fn untrack(path: &Path) {
    disks().lock().unwrap().remove(&*path.to_string_lossy());
}

/// What the disk may hold after a crash now: each page its last-synced or its
/// current content, chosen by `pick_synced(page)`; with a foreign boot id.
pub fn crash_image(path: &Path, mut pick_synced: impl FnMut(usize) -> bool) -> Vec<u8> {
    let mut image = std::fs::read(path).expect("read the ring file");
    let disks = disks().lock().unwrap();
    let synced = &disks[&*path.to_string_lossy()];
    for (i, page) in image.chunks_mut(PAGE).enumerate() {
        if pick_synced(i) {
            // A page never written back is what the file was created with:
            // the creation writes every page back.
            let old = synced.get(&i).expect("every page is written back at creation");
            page.copy_from_slice(&old[..page.len()]);
        }
    }
    image[BOOT_ID_AT as usize..BOOT_ID_AT as usize + 16].copy_from_slice(&[0x5A; 16]);
    image
}

/// SplitMix64's output function: a well-mixed hash of `x`.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
