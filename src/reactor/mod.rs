//! Async handles (feature `async`): [`AsyncConsumer`] and [`AsyncProducer`],
//! whose waits are futures on any executor, and [`ReadyFd`], a ring's
//! readiness as a descriptor for event loops; all woken by one reactor
//! thread per process that sleeps on every waiting ring's futex word at
//! once.

mod handles;
mod ready_fd;
mod thread;

pub use handles::{AsyncConsumer, AsyncProducer, ReadFuture, RecvFuture, SendFuture};
pub use ready_fd::ReadyFd;

/// System calls made so far by the process's reactor (one sleep per
/// wake-up, whatever the number of rings) and by async waits to wake it:
/// with the handles' [`Stats`](crate::Stats), the system calls async
/// waiting costs shmring. (The executor's own, to wake a task's thread, are
/// not counted.)
pub fn reactor_syscalls() -> u64 {
    thread::Reactor::syscalls_so_far()
}
