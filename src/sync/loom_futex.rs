//! The loom model of the futex (see the parent module), used by the ring
//! algorithms when built with `--cfg shmring_loom`.

use super::{AtomicU32, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A loom model of a futex word that keeps the kernel's contract: `wait`
/// compares the word under the bucket lock and sleeps only if it still
/// equals `expected`; `wake_all` takes the bucket lock and wakes every
/// sleeper, those of [`wait_any`] too. Timeouts are not modelled (a wait
/// blocks until woken), so a lost wake-up is reported by loom as a
/// deadlock.
#[derive(Debug)]
pub struct FutexWord {
    word: AtomicU32,
    /// The bucket lock, guarding the [`wait_any`] sleepers queued here.
    bucket: Mutex<Vec<Arc<Doorbell>>>,
    sleepers: Condvar,
}

/// A sleeper of [`wait_any`], queued on each of its words as the kernel
/// queues a `futex_waitv` sleeper on each word's bucket.
#[derive(Debug)]
pub(crate) struct Doorbell {
    rung: Mutex<bool>,
    ringing: Condvar,
}

impl Default for FutexWord {
    fn default() -> Self {
        FutexWord { word: AtomicU32::new(0), bucket: Mutex::new(Vec::new()), sleepers: Condvar::new() }
    }
}

impl FutexWord {
    /// The word's current value.
    pub fn load(&self, order: Ordering) -> u32 {
        self.word.load(order)
    }

    /// The word itself, for the shared [`FutexWord::bump`].
    pub(super) fn word(&self) -> &AtomicU32 {
        &self.word
    }

    pub(crate) fn wait(&self, expected: u32, _timeout: Option<Duration>) {
        let bucket = self.bucket.lock().unwrap();
        if self.word.load(Ordering::SeqCst) != expected {
            return;
        }
        drop(self.sleepers.wait(bucket).unwrap());
    }

    pub(crate) fn wake_all(&self) {
        let bucket = self.bucket.lock().unwrap();
        self.sleepers.notify_all();
        for bell in bucket.iter() {
            *bell.rung.lock().unwrap() = true;
            bell.ringing.notify_all();
        }
    }
}

/// `futex_waitv`: each word is compared under its bucket lock and the
/// sleeper queued there in the same critical section; a changed word
/// returns at once; a wake of any queued word rings the doorbell.
pub(crate) fn wait_any(words: &[(&FutexWord, u32)], _timeout: Duration, _round: usize) {
    let bell = Arc::new(Doorbell { rung: Mutex::new(false), ringing: Condvar::new() });
    let mut queued = 0;
    for (word, expected) in words {
        let mut bucket = word.bucket.lock().unwrap();
        if word.word.load(Ordering::SeqCst) != *expected {
            break;
        }
        bucket.push(Arc::clone(&bell));
        queued += 1;
    }
    if queued == words.len() {
        let mut rung = bell.rung.lock().unwrap();
        while !*rung {
            rung = bell.ringing.wait(rung).unwrap();
        }
    }
    for (word, _) in &words[..queued] {
        word.bucket.lock().unwrap().retain(|queued| !Arc::ptr_eq(queued, &bell));
    }
}
