//! Loom models of shmring's ring protocol live in `tests/`; they build to
//! nothing unless compiled with `RUSTFLAGS="--cfg shmring_loom"`. See the
//! docs/verification.md ("Loom models") and `.ci/loom`.

/// Runs `f` under loom with the preemption bound from `LOOM_MAX_PREEMPTIONS`
/// (default 3), and reports how many interleavings it explored.
#[cfg(shmring_loom)]
pub fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let start = std::time::Instant::now();
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!(
        "loom model {name}: {} interleavings, preemption bound {}, {:.1?}",
        runs.load(Ordering::Relaxed),
        builder.preemption_bound.unwrap_or(0),
        start.elapsed()
    );
}
