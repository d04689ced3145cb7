//! Pinning a bench process to one CPU, shared by the benches that run a
//! pair of processes (included with `#[path]`).

/// Pins the calling thread to `cpu`; says so on stderr if it cannot (a
/// container may forbid it), and runs unpinned then.
pub fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("cannot pin to CPU {cpu}: {e}");
    }
}

/// The first two CPUs this process may run on, if it may run on two.
pub fn two_cpus() -> Option<(usize, usize)> {
    let allowed = rustix::thread::sched_getaffinity(None).ok()?;
    let mut cpus = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&cpu| allowed.is_set(cpu));
    Some((cpus.next()?, cpus.next()?))
}
