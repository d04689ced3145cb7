//! Loom models of shmring's ring protocol live in `tests/`; they build to
//! nothing unless compiled with `RUSTFLAGS="--cfg shmring_loom"`. See the
//! README's "Verification" section and `.ci/loom`.
