//! Space the producer claimed for one message, written in place where the
//! trust rule allows (or in the producer's buffer, copied in on commit).

use super::producer::{Claim, Producer};
use super::record::payload_offset;
use super::region::ViewMut;
use super::RingBacking;
use crate::error::SendStop;
use crate::wait::WaitStrategy;
use std::time::Duration;

/// Making grants: the zero-copy side of sending.
impl<B: RingBacking> Producer<B> {
    /// Claims `len` bytes in the ring if there is room now (`None`: full).
    /// The common case is inlined, as [`try_send`](Self::try_send)'s.
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<Option<Grant<'_, B>>, SendStop> {
        let claim = match self.spsc_claim_without_looking(len) {
            Some(claim) => Some(claim),
            None => self.claim_now(len)?,
        };
        match claim {
            Some(claim) => Grant::new(self, claim).map(Some),
            None => Ok(None),
        }
    }

    /// Claims `len` bytes, waiting for room with `strategy`.
    #[inline]
    pub fn reserve(&mut self, len: usize, strategy: WaitStrategy) -> Result<Grant<'_, B>, SendStop> {
        let claim = match self.spsc_claim_without_looking(len) {
            Some(claim) => claim,
            None => self.claim(len, strategy)?,
        };
        Grant::new(self, claim)
    }

    /// Claims `len` bytes, waiting for room with `strategy` for at most
    /// `timeout` (`None`: still full).
    pub fn reserve_for(
        &mut self,
        len: usize,
        strategy: WaitStrategy,
        timeout: Duration,
    ) -> Result<Option<Grant<'_, B>>, SendStop> {
        match self.claim_for(len, strategy, timeout)? {
            Some(claim) => Grant::new(self, claim).map(Some),
            None => Ok(None),
        }
    }
}

/// Space claimed in the ring for one message, written in place (or, where
/// the trust rule does not allow a view of the ring, in the producer's
/// buffer, copied into the ring on commit).
///
/// Dereferences to the `len` bytes of the payload. [`commit`](Grant::commit)
/// publishes them; dropping the grant without committing discards them (the
/// consumer never sees them). The claim itself is kept by the producer
/// (`open_claim`), so that a grant that is never dropped is discarded by the
/// producer's next claim or its `Drop`.
#[derive(Debug)]
pub struct Grant<'a, B: RingBacking> {
    producer: &'a mut Producer<B>,
    /// The payload in the ring; `None`: in `producer.staging`.
    view: Option<ViewMut<'a>>,
}

impl<'a, B: RingBacking> Grant<'a, B> {
    #[inline]
    pub(super) fn new(producer: &'a mut Producer<B>, claim: Claim) -> Result<Self, SendStop> {
        let offset = payload_offset(claim.position, producer.capacity);
        let len = claim.len as usize;
        let view = if !producer.backing.region().fits(offset, len) {
            None
        } else if producer.in_place {
            let region: *const super::Region = producer.backing.region();
            // SAFETY: `region` points into `producer.backing`, which lives
            // (and keeps its mapping) for all of 'a. The claimed bytes lie
            // between our claim's start and the consumer's head plus
            // capacity, which the protocol gives to this producer alone until
            // it commits; the grant holds the producer mutably for its whole
            // life, so no other view of them exists in this process; and
            // `in_place` is set only where every process that can write the
            // segment is trusted to keep the protocol. The view points into
            // the mapping, not into `Producer`, so it does not alias the
            // `&mut Producer` beside it.
            let view = unsafe { (*region).view_mut(offset, len) };
            if view.is_some() {
                producer.lend_view();
            }
            view.map(Some)
        } else {
            producer.staging.clear();
            producer.staging.resize(len, 0);
            Some(None)
        };
        match view {
            Some(view) => {
                producer.open_claim = Some(claim);
                Ok(Grant { producer, view })
            }
            None => {
                producer.discard(claim);
                Err(producer.corrupted(format!("claim at position {} does not fit the region", claim.position)))
            }
        }
    }

    /// Publishes the message.
    #[inline]
    pub fn commit(self) {
        self.commit_len(usize::MAX);
    }

    /// Publishes the first `len` bytes as the message (all of them if `len`
    /// is larger); the rest of the claim is given back.
    #[inline]
    pub fn commit_len(mut self, len: usize) {
        // Taken here, so that `Drop` finds nothing to discard.
        if let Some(claim) = self.producer.open_claim.take() {
            // At most the claim's length, which is a `u32`.
            let len = len.min(claim.len as usize);
            let offset = payload_offset(claim.position, self.producer.capacity);
            let region = self.producer.backing.region();
            // Taken out, so that the view ends here, before the commit hands
            // its bytes to the consumer, which may then read or (MPSC) zero
            // them.
            let lent = match self.view.take() {
                Some(mut view) => {
                    view.flush_into(region, offset, len);
                    true
                }
                None => {
                    let staging = &self.producer.staging;
                    let written = region.write(offset, &staging[..len.min(staging.len())]);
                    debug_assert!(written, "checked to fit when the grant was made");
                    false
                }
            };
            if lent {
                self.producer.return_view();
            }
            self.producer.commit(claim, len as u32);
        }
    }
}

impl<B: RingBacking> Drop for Grant<'_, B> {
    fn drop(&mut self) {
        if self.view.take().is_some() {
            self.producer.return_view();
        }
        if let Some(claim) = self.producer.open_claim.take() {
            self.producer.discard(claim);
        }
    }
}

impl<B: RingBacking> std::ops::Deref for Grant<'_, B> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.view {
            Some(view) => view,
            None => &self.producer.staging,
        }
    }
}

impl<B: RingBacking> std::ops::DerefMut for Grant<'_, B> {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.view {
            Some(view) => view,
            None => &mut self.producer.staging,
        }
    }
}
