//! Where a loom model can make a producer "die" (stop for good, without
//! detaching) in the middle of a claim. Outside loom builds nothing dies.

/// A stage of an MPSC claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DieAt {
    /// After publishing the intent, before the CAS.
    Intent,
    /// After the CAS, before the claim marker.
    Claimed,
    /// After the claim marker (and padding), before the commit.
    Marked,
}
