//! A message the consumer lends: in place where the trust rule allows, or
//! copied to the consumer's buffer; its space is freed when the guard drops.

use super::consumer::{Consumer, Found};
use super::record::payload_offset;
use super::region::View;
use super::RingBacking;
use crate::error::RecvStop;
use crate::wait::WaitStrategy;
use std::time::Duration;

/// Lending messages: the zero-copy side of receiving.
impl<B: RingBacking> Consumer<B> {
    /// Borrows the next message in place if one is waiting (`None`: empty).
    #[inline]
    pub fn try_read(&mut self) -> Result<Option<ReadGuard<'_, B>>, RecvStop> {
        match self.next_now()? {
            Some(found) => ReadGuard::new(self, found).map(Some),
            None => Ok(None),
        }
    }

    /// Borrows the next message in place, waiting with `strategy`.
    #[inline]
    pub fn read(&mut self, strategy: WaitStrategy) -> Result<ReadGuard<'_, B>, RecvStop> {
        let found = self.next(strategy)?;
        ReadGuard::new(self, found)
    }

    /// Borrows the next message in place, waiting with `strategy` for at
    /// most `timeout` (`None`: still empty).
    pub fn read_for(
        &mut self,
        strategy: WaitStrategy,
        timeout: Duration,
    ) -> Result<Option<ReadGuard<'_, B>>, RecvStop> {
        match self.next_for(strategy, timeout)? {
            Some(found) => ReadGuard::new(self, found).map(Some),
            None => Ok(None),
        }
    }
}

/// A message borrowed in place (or, where the trust rule does not allow
/// that, copied to the consumer's buffer). Dereferences to its payload;
/// dropping the guard frees its space in the ring.
#[derive(Debug)]
pub struct ReadGuard<'a, B: RingBacking> {
    consumer: &'a mut Consumer<B>,
    /// The payload in place; `None`: it is in `consumer.staging`.
    view: Option<View<'a>>,
    found: Found,
}

impl<'a, B: RingBacking> ReadGuard<'a, B> {
    #[inline]
    pub(super) fn new(consumer: &'a mut Consumer<B>, found: Found) -> Result<Self, RecvStop> {
        let offset = payload_offset(found.position, consumer.capacity);
        let len = found.len as usize;
        let fits = if consumer.in_place {
            let region: *const super::Region = consumer.backing.region();
            // SAFETY: `region` points into `consumer.backing`, which lives
            // (and keeps its mapping) for all of 'a. The record is committed
            // and lies before `head` plus its size, which no producer may
            // reuse until we advance `head` in `Drop`; the guard holds the
            // consumer mutably, so nothing in this process frees or zeroes
            // those bytes meanwhile; and `in_place` is set only where every
            // process that can write the segment is trusted to keep the
            // protocol (`set_borrow_in_place`). The view points into the
            // mapping, not into `Consumer`.
            let view = unsafe { (*region).view(offset, len) };
            match view {
                Some(view) => {
                    consumer.lend_view();
                    return Ok(ReadGuard { consumer, view: Some(view), found });
                }
                None => false,
            }
        } else {
            consumer.staging.clear();
            consumer.backing.region().append_to(offset, len, &mut consumer.staging)
        };
        if !fits {
            return Err(consumer.corrupted(format!("record at position {} does not fit the region", found.position)));
        }
        Ok(ReadGuard { consumer, view: None, found })
    }
}

impl<B: RingBacking> ReadGuard<'_, B> {
    /// Leaves the message in the ring: the next read returns it again.
    pub fn put_back(mut self) {
        if self.view.take().is_some() {
            self.consumer.return_view();
        }
        // Nothing else to undo: `head` moves only in `Drop`, skipped here.
        std::mem::forget(self);
    }
}

impl<B: RingBacking> std::ops::Deref for ReadGuard<'_, B> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.view {
            Some(view) => view,
            None => &self.consumer.staging,
        }
    }
}

impl<B: RingBacking> Drop for ReadGuard<'_, B> {
    #[inline]
    fn drop(&mut self) {
        // The view ends before its space is released to the producers.
        if self.view.take().is_some() {
            self.consumer.return_view();
        }
        self.consumer.release(self.found);
    }
}
