//! Async handles (feature `async`): [`AsyncConsumer`] and [`AsyncProducer`],
//! whose waits are futures on any executor, woken by one reactor thread per
//! process that sleeps on every waiting ring's futex word at once.

mod handles;
mod thread;

pub use handles::{AsyncConsumer, AsyncProducer, ReadFuture, RecvFuture, SendFuture};

/// System calls the process's reactor has made to sleep (one per wake-up,
/// whatever the number of rings): with [`Stats`](crate::Stats) of the
/// handles, the system calls async waiting costs.
pub fn reactor_sleeps() -> u64 {
    thread::Reactor::sleeps_so_far()
}
