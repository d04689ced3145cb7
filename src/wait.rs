//! Wait strategies: how a blocked side spends its time until the ring lets it
//! go on.
//!
//! A kernel wake-up costs tens of microseconds on a virtual machine, against
//! well under a microsecond for a hand-off between two spinning cores. So the
//! default spins for a while (no system call, no `sched_yield`) and only then
//! parks on the futex; a side that parks wakes at least every [`PARK_SLICE`]
//! to check that its peer is still alive.

use std::time::{Duration, Instant};

/// How long [`WaitStrategy::default`] spins before parking.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// The longest a parked side sleeps before re-checking its peer's liveness,
/// by default (see [`RingOptions::liveness_interval`]).
///
/// [`RingOptions::liveness_interval`]: crate::RingOptions::liveness_interval
pub const PARK_SLICE: Duration = Duration::from_millis(50);

/// How often, by default, a waiting side may ask the kernel whether a peer
/// is alive (one `fcntl` per peer): a fifth of the park slice. Together they
/// bound how long a dead peer (or, in an MPSC ring, a dead producer's
/// unfinished record) can hold up a waiting side once the death has happened.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// The probe interval that goes with a park slice (`liveness`): a fifth.
pub(crate) fn probe_interval(liveness: Duration) -> Duration {
    liveness / 5
}

/// What a blocked `send`/`recv` does while it waits.
///
/// ```
/// use shmring::WaitStrategy;
/// use std::time::Duration;
/// assert_eq!(WaitStrategy::default(), WaitStrategy::SpinThenPark(Duration::from_micros(50)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Poll without ever sleeping: lowest latency, burns a core while idle.
    BusySpin,
    /// Poll for the given time, then sleep on the futex. The default.
    SpinThenPark(Duration),
    /// Sleep on the futex at once: no spinning, a kernel wake-up per wait.
    Park,
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::SpinThenPark(DEFAULT_SPIN)
    }
}

impl std::str::FromStr for WaitStrategy {
    type Err = String;

    /// `busy`, `spin` (spin-then-park with the default spin) or `park`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "busy" => Ok(WaitStrategy::BusySpin),
            "spin" => Ok(WaitStrategy::default()),
            "park" => Ok(WaitStrategy::Park),
            other => Err(format!("unknown wait strategy {other:?}: expected busy, spin or park")),
        }
    }
}

/// The name [`FromStr`](std::str::FromStr) parses: `busy`, `spin` or `park`
/// (a spin-then-park of any length prints as `spin`).
///
/// ```
/// use shmring::WaitStrategy;
/// assert_eq!(WaitStrategy::Park.to_string(), "park");
/// assert_eq!(WaitStrategy::default().to_string().parse(), Ok(WaitStrategy::default()));
/// ```
impl std::fmt::Display for WaitStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WaitStrategy::BusySpin => "busy",
            WaitStrategy::SpinThenPark(_) => "spin",
            WaitStrategy::Park => "park",
        })
    }
}

pub(crate) use pace::Pace;

/// In a private module: `Pace` appears in the crate-private traits behind
/// the public `Selectable`, yet is no part of the public API.
mod pace {
    /// Why a side looks at the ring, which sets how often it may make the checks
    /// that cost a clock read or a system call (liveness probes) when it finds
    /// nothing to do.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Pace {
        /// A non-blocking call by the user (`try_*`): calls may come at any
        /// rate, so an empty or full result reads the clock and probes once the
        /// probe interval has passed.
        Call,
        /// A poll of a spin loop, back to back with the last: only every 1024th
        /// even reads the clock.
        Spin,
        /// The re-check of a side about to sleep: probes once the interval has
        /// passed.
        Park,
    }
}

/// Something a handle waits for.
pub(crate) trait Waitable {
    type Ready;
    /// Why waiting is over without it (a side's stop reason).
    type Stop;
    /// Try once without sleeping: `Some` when ready.
    fn poll(&mut self, pace: Pace) -> Result<Option<Self::Ready>, Self::Stop>;
    /// Announce, re-check, and sleep at most `timeout` if still not ready.
    fn park(&mut self, timeout: Duration) -> Result<Option<Self::Ready>, Self::Stop>;
    /// The longest one park may sleep before the side re-checks its peers.
    fn park_slice(&self) -> Duration {
        PARK_SLICE
    }
}

/// Waits for `waitable` with `strategy` until it is ready or it stops.
#[inline(always)]
pub(crate) fn block<W: Waitable>(waitable: &mut W, strategy: WaitStrategy) -> Result<W::Ready, W::Stop> {
    loop {
        // Without a deadline `wait` never gives up; were it to, wait again.
        if let Some(ready) = wait(waitable, strategy, None)? {
            return Ok(ready);
        }
    }
}

/// Waits for `waitable` with `strategy` until it is ready, it stops, or
/// `timeout` passes (then `Ok(None)`). A timeout too long for the clock to
/// count (`Duration::MAX`) waits without limit.
pub(crate) fn block_for<W: Waitable>(
    waitable: &mut W,
    strategy: WaitStrategy,
    timeout: Duration,
) -> Result<Option<W::Ready>, W::Stop> {
    wait(waitable, strategy, Some(timeout))
}

/// [`block`] and [`block_for`]: `Ok(None)` only once `timeout` has passed.
///
/// The clock is first read only after a poll has failed: a call that finds
/// its message (or room) at once costs no clock read at all. That first
/// poll is inlined into the caller, the waiting is not.
#[inline(always)]
fn wait<W: Waitable>(
    waitable: &mut W,
    strategy: WaitStrategy,
    timeout: Option<Duration>,
) -> Result<Option<W::Ready>, W::Stop> {
    // Paced as a spin poll: a blocking call goes on polling, and its spin
    // loop and parks make the time-paced checks, so its first look need not
    // read the clock (a ping-pong would pay that on every message).
    if let Some(ready) = waitable.poll(Pace::Spin)? {
        return Ok(Some(ready));
    }
    wait_after_first_poll(waitable, strategy, timeout)
}

/// [`wait`] once its first poll has failed.
#[inline(never)]
fn wait_after_first_poll<W: Waitable>(
    waitable: &mut W,
    strategy: WaitStrategy,
    timeout: Option<Duration>,
) -> Result<Option<W::Ready>, W::Stop> {
    // `None` also when the deadline is beyond what `Instant` can hold.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let spin_for = match strategy {
        WaitStrategy::BusySpin => None,
        WaitStrategy::SpinThenPark(d) => Some(d),
        WaitStrategy::Park => Some(Duration::ZERO),
    };
    if spin_for != Some(Duration::ZERO) {
        let start = Instant::now();
        let mut spins: u32 = 0;
        loop {
            std::hint::spin_loop();
            if let Some(ready) = waitable.poll(Pace::Spin)? {
                return Ok(Some(ready));
            }
            spins = spins.wrapping_add(1);
            // Reading the clock costs more than a poll: look every 64 spins.
            if spins % 64 == 0 {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Ok(None);
                }
                if spin_for.is_some_and(|s| now.duration_since(start) >= s) {
                    break;
                }
            }
        }
    }
    let park_slice = waitable.park_slice();
    loop {
        let slice = match deadline {
            None => park_slice,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    // One last look: what became ready during the last
                    // sleep without waking it (a producer's wake for room
                    // is deferred until there is enough of it) counts.
                    return waitable.poll(Pace::Park);
                }
                left.min(park_slice)
            }
        };
        if let Some(ready) = waitable.park(slice)? {
            return Ok(Some(ready));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ReadyAfter {
        polls_left: u32,
        parks: u32,
    }

    impl Waitable for ReadyAfter {
        type Ready = u32;
        type Stop = ();
        fn poll(&mut self, _pace: Pace) -> Result<Option<u32>, ()> {
            if self.polls_left == 0 {
                return Ok(Some(7));
            }
            self.polls_left -= 1;
            Ok(None)
        }
        fn park(&mut self, timeout: Duration) -> Result<Option<u32>, ()> {
            assert!(timeout <= PARK_SLICE);
            self.parks += 1;
            self.poll(Pace::Park)
        }
    }

    #[test]
    fn park_strategy_parks_at_once() {
        let mut w = ReadyAfter { polls_left: 3, parks: 0 };
        assert_eq!(block(&mut w, WaitStrategy::Park), Ok(7));
        assert_eq!(w.parks, 3);
    }

    #[test]
    fn busy_spin_never_parks() {
        let mut w = ReadyAfter { polls_left: 10_000, parks: 0 };
        assert_eq!(block(&mut w, WaitStrategy::BusySpin), Ok(7));
        assert_eq!(w.parks, 0);
    }

    #[test]
    fn deadline_is_honoured_by_every_strategy() {
        for strategy in [WaitStrategy::BusySpin, WaitStrategy::default(), WaitStrategy::Park] {
            let mut w = ReadyAfter { polls_left: u32::MAX, parks: 0 };
            let start = Instant::now();
            // `park` here returns at once, so the park loop must check the
            // deadline itself.
            assert_eq!(block_for(&mut w, strategy, Duration::from_millis(20)), Ok(None));
            assert!(start.elapsed() >= Duration::from_millis(20));
        }
    }

    #[test]
    fn parses_cli_names() {
        assert_eq!("busy".parse(), Ok(WaitStrategy::BusySpin));
        assert_eq!("spin".parse(), Ok(WaitStrategy::default()));
        assert_eq!("park".parse(), Ok(WaitStrategy::Park));
        assert!("nap".parse::<WaitStrategy>().is_err());
        for strategy in [WaitStrategy::BusySpin, WaitStrategy::default(), WaitStrategy::Park] {
            assert_eq!(strategy.to_string().parse(), Ok(strategy));
        }
    }
}
