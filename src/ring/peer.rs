//! Whether the other side is still there: attach and detach marks in the
//! participant slots, the kernel's liveness probe, and how often it is asked.

use super::*;

/// Paces the checks a waiting side makes through system calls (liveness
/// probes): at most every `interval`, whatever the rate of calls. The clock
/// is read only when a side found nothing to do (an empty or full ring), and
/// in a spin loop only every 1024th poll.
#[derive(Debug)]
pub(crate) struct Limiter {
    polls: u32,
    pub(crate) interval: Duration,
    #[cfg(not(shmring_loom))]
    last_probe: Option<std::time::Instant>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            polls: 0,
            interval: crate::wait::PROBE_INTERVAL,
            #[cfg(not(shmring_loom))]
            last_probe: None,
        }
    }
}

impl Limiter {
    /// Whether a check is due now.
    #[cfg(not(shmring_loom))]
    pub(crate) fn due(&mut self, pace: Pace) -> bool {
        if pace == Pace::Spin {
            self.polls = self.polls.wrapping_add(1);
            if self.polls % 1024 != 0 {
                return false;
            }
        }
        let now = std::time::Instant::now();
        match self.last_probe {
            Some(last) if now.duration_since(last) < self.interval => false,
            _ => {
                self.last_probe = Some(now);
                true
            }
        }
    }

    /// Under loom there is no clock: a check is due on every park re-check
    /// (the models park rather than poll).
    #[cfg(shmring_loom)]
    pub(crate) fn due(&mut self, pace: Pace) -> bool {
        let _ = (self.polls, self.interval);
        pace == Pace::Park
    }
}

/// What a waiting side knows of a peer slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerStatus {
    /// Never attached.
    Never,
    /// Attached and (as far as checked) alive.
    Present,
    /// Detached, or its holder died.
    Gone,
}

/// Watches the peer a handle waits on: its slot state, and (rate-limited) the
/// kernel's word on whether it is alive.
#[derive(Debug)]
pub(crate) struct PeerWatch {
    peer: Slot,
    /// The slot's `attachments` count when the probe found its holder dead:
    /// the verdict stands until someone attaches again.
    dead_holder: Option<u32>,
    pub(crate) limiter: Limiter,
}

impl PeerWatch {
    pub(crate) fn new(peer: Slot) -> Self {
        PeerWatch { peer, dead_holder: None, limiter: Limiter::default() }
    }

    /// Whether the peer has detached or died: its slot's state on every call,
    /// the kernel's word on its liveness as often as `pace` allows (see
    /// [`Limiter`]).
    pub(crate) fn peer_gone<B: RingBacking>(&mut self, backing: &B, pace: Pace) -> bool {
        let limiter = &mut self.limiter;
        matches!(Self::status_of(self.peer, &mut self.dead_holder, backing, || limiter.due(pace)), PeerStatus::Gone)
    }

    /// The peer's status, probing its liveness only if `may_probe` says so.
    pub(crate) fn status<B: RingBacking>(&mut self, backing: &B, may_probe: impl FnOnce() -> bool) -> PeerStatus {
        Self::status_of(self.peer, &mut self.dead_holder, backing, may_probe)
    }

    fn status_of<B: RingBacking>(
        peer: Slot,
        dead_holder: &mut Option<u32>,
        backing: &B,
        may_probe: impl FnOnce() -> bool,
    ) -> PeerStatus {
        let Some(participant) = backing.header().participant(peer) else { return PeerStatus::Never };
        match participant.state.load(Ordering::Acquire) {
            SLOT_DETACHED => PeerStatus::Gone,
            SLOT_ATTACHED => {
                let attachments = participant.attachments.load(Ordering::Relaxed);
                if *dead_holder == Some(attachments) {
                    return PeerStatus::Gone;
                }
                *dead_holder = None;
                if may_probe() && !backing.is_alive(peer) {
                    *dead_holder = Some(attachments);
                    return PeerStatus::Gone;
                }
                PeerStatus::Present
            }
            SLOT_EMPTY => PeerStatus::Never,
            // Not a state shmring writes: treat as absent, never as alive.
            _ => PeerStatus::Gone,
        }
    }
}

/// Marks `slot` attached by `pid`; a producer also counts the change in the
/// producer line first (see `ProducersWatch::all_gone`).
pub(crate) fn mark_attached(header: &RingHeader, slot: Slot, pid: u32) {
    if let Some(p) = header.participant(slot) {
        p.pid.store(pid, Ordering::Relaxed);
        p.attachments.fetch_add(1, Ordering::Relaxed);
        count_producer_change(header, slot);
        p.state.store(SLOT_ATTACHED, Ordering::Release);
    }
}

/// Counts a producer's attach or detach in the producer line, before its
/// slot says so: a consumer that read a slot before one producer attached
/// and another slot after another detached (a rolling restart) sees the
/// count moved, whichever the order in which it saw them.
fn count_producer_change(header: &RingHeader, slot: Slot) {
    if let Slot::Producer(_) = slot {
        header.producer.changes.fetch_add(1, Ordering::Release);
    }
}

/// Marks `slot` detached and wakes whoever waits on `peer_line`, so a peer
/// parked on this side notices at once.
pub(crate) fn mark_detached(header: &RingHeader, slot: Slot, peer_line: &WakeLine, stats: &mut Stats) {
    if let Some(p) = header.participant(slot) {
        // No longer lending in place (see `AnonymousRing::send_over`).
        p.lends.store(0, Ordering::Relaxed);
        count_producer_change(header, slot);
        p.state.store(SLOT_DETACHED, Ordering::Release);
    }
    // A fresh waker: whoever is announced must hear of the detach.
    Waker::default().wake_if_sleeping(peer_line, stats);
}
