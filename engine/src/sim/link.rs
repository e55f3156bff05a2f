//! A KV link as a processor-sharing queue in virtual time.
//!
//! The transfers crossing a link share its bandwidth equally. Instead of re-planning every
//! transfer when one starts or ends, the link keeps a virtual clock `V` that advances at
//! `bandwidth / active` bytes per second — the bytes each active transfer has received — and
//! gives each transfer the finish tag `V(start) + bytes`. Tags do not change when others come
//! and go, so transfers finish in tag order: the next completion is the smallest tag, found
//! in O(log k) in an indexed priority queue (which also removes a cancelled transfer in
//! O(log k)), and the link needs one pending completion event, re-planned only when the
//! number of active transfers changes.
//!
//! Staleness needs no counter that could wrap: the link remembers when its one live
//! completion is due; an event at any other time is stale.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use crate::seq::SeqId;
use crate::time::{SimDuration, SimTime};
use crate::units::Bytes;

/// Finish tag: virtual bytes (a non-negative f64 as its bit pattern, which orders like the
/// value) and the start order (the transfer's ticket), so equal tags finish in the order
/// they started; then the sequence.
type Entry = Reverse<(u64, u64, SeqId)>;

/// A KV-transfer path between two pools.
#[derive(Debug)]
pub(crate) struct Link {
    /// Fixed latency each transfer pays once its bytes are across.
    pub latency: SimDuration,
    /// Bytes per second; `None`: only the latency counts.
    pub bandwidth_bytes_s: Option<f64>,
    /// Virtual time: bytes each active transfer has received since the link was last idle.
    vtime: f64,
    updated: SimTime,
    /// Transfers crossing, smallest finish tag on top, and cancelled ones not yet dropped.
    heap: BinaryHeap<Entry>,
    /// Tickets of cancelled transfers still in the heap.
    cancelled: HashSet<u64>,
    /// Transfers crossing (the heap less the cancelled ones): they share the bandwidth.
    live: usize,
    started: u64,
    /// When the link's one live completion event is due.
    due: Option<SimTime>,
}

impl Link {
    pub fn new(latency: SimDuration, bandwidth_bytes_s: Option<f64>) -> Self {
        Link {
            latency,
            bandwidth_bytes_s,
            vtime: 0.0,
            updated: SimTime::ZERO,
            heap: BinaryHeap::new(),
            cancelled: HashSet::new(),
            live: 0,
            started: 0,
            due: None,
        }
    }

    /// Transfers whose bytes are crossing now.
    #[cfg(test)]
    pub fn active(&self) -> usize {
        self.live
    }

    fn advance(&mut self, now: SimTime) {
        if let (Some(bw), n) = (self.bandwidth_bytes_s, self.live)
            && n > 0
        {
            self.vtime += (now - self.updated).as_secs_f64() * bw / n as f64;
        }
        self.updated = now;
    }

    /// Puts `bytes` of `sid` on the link at `now`. Returns the transfer's ticket (to
    /// cancel it with) and when the link's next completion is due if that changed
    /// (schedule a completion event then).
    pub fn start(&mut self, now: SimTime, sid: SeqId, bytes: Bytes) -> (u64, Option<SimTime>) {
        self.advance(now);
        let tag = self.vtime + bytes.get() as f64;
        let ticket = self.started;
        self.heap.push(Reverse((tag.to_bits(), ticket, sid)));
        self.started += 1;
        self.live += 1;
        (ticket, self.replan(now))
    }

    /// Takes the transfer with `ticket` off the link (a cancelled transfer); returns when
    /// the next completion is due if that changed.
    pub fn remove(&mut self, now: SimTime, ticket: u64) -> Option<SimTime> {
        self.advance(now);
        debug_assert!(ticket < self.started && self.live > 0);
        self.cancelled.insert(ticket);
        self.live -= 1;
        self.replan(now)
    }

    /// The first transfer still crossing, cancelled ones above it dropped.
    fn head(&mut self) -> Option<(u64, SeqId)> {
        while let Some(&Reverse((tag, ticket, sid))) = self.heap.peek() {
            if self.cancelled.is_empty() || !self.cancelled.remove(&ticket) {
                return Some((tag, sid));
            }
            self.heap.pop();
        }
        None
    }

    /// Whether a completion event at `now` is the live one (others are stale).
    pub fn is_due(&self, now: SimTime) -> bool {
        self.due == Some(now)
    }

    /// The live completion event fired at `now`: the transfers whose bytes are across, in
    /// finish order, go to `done`. Returns the next completion time, if any.
    pub fn complete(&mut self, now: SimTime, done: &mut Vec<SeqId>) -> Option<SimTime> {
        debug_assert!(self.is_due(now));
        self.due = None;
        self.advance(now);
        // The event was planned for the head's tag and rounded to the nanosecond: the head
        // is done by definition, whether the clock is a fraction of a nanosecond before or
        // after its tag. The clock itself is not moved to the tag, which would bias it ahead
        // by every rounding down and let the error grow over a busy period.
        if let Some((_, sid)) = self.head() {
            self.heap.pop();
            self.live -= 1;
            done.push(sid);
        }
        while let Some((tag, sid)) = self.head() {
            if f64::from_bits(tag) > self.vtime {
                break;
            }
            self.heap.pop();
            self.live -= 1;
            done.push(sid);
        }
        self.replan(now)
    }

    // When the smallest tag is reached at the current share; re-armed only if that moved.
    fn replan(&mut self, now: SimTime) -> Option<SimTime> {
        let Some((tag, _)) = self.head() else {
            // Idle: restart virtual time, so it never grows without bound.
            debug_assert!(self.live == 0 && self.cancelled.is_empty());
            self.vtime = 0.0;
            self.due = None;
            return None;
        };
        let bw = self.bandwidth_bytes_s.expect("only links with a bandwidth queue transfers");
        let left = (f64::from_bits(tag) - self.vtime).max(0.0);
        let at = now + SimDuration::from_secs_f64(left * self.live as f64 / bw);
        if self.due == Some(at) {
            return None;
        }
        self.due = Some(at);
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_shares_then_the_rest_alone() {
        // 1 GB/s; A (1 MB) at t = 0, B (1 MB) at t = 0.5 ms.
        let mut l = Link::new(SimDuration::ZERO, Some(1e9));
        let (a, b) = (SeqId(0), SeqId(1));
        assert_eq!(l.start(SimTime(0), a, Bytes(1_000_000)).1, Some(SimTime(1_000_000)));
        // A has 0.5 MB left; sharing, both progress at 0.5 GB/s: A ends at 1.5 ms.
        assert_eq!(l.start(SimTime(500_000), b, Bytes(1_000_000)).1, Some(SimTime(1_500_000)));
        assert!(!l.is_due(SimTime(1_000_000)), "the first plan is stale now");
        let mut done = Vec::new();
        // B then has 0.5 MB left, alone at 1 GB/s: done at 2 ms.
        assert_eq!(l.complete(SimTime(1_500_000), &mut done), Some(SimTime(2_000_000)));
        assert_eq!(done, vec![a]);
        assert_eq!(l.complete(SimTime(2_000_000), &mut done), None);
        assert_eq!(done, vec![a, b]);
        assert_eq!(l.active(), 0);
    }

    #[test]
    fn a_removed_transfer_gives_its_share_back() {
        let mut l = Link::new(SimDuration::ZERO, Some(1e9));
        l.start(SimTime(0), SeqId(0), Bytes(1_000_000));
        let (t1, _) = l.start(SimTime(0), SeqId(1), Bytes(1_000_000));
        // At 1 ms each has 0.5 MB left; removing one leaves the other alone: done at 1.5 ms.
        assert_eq!(l.remove(SimTime(1_000_000), t1), Some(SimTime(1_500_000)));
        assert_eq!(l.active(), 1);
        let mut done = Vec::new();
        assert_eq!(l.complete(SimTime(1_500_000), &mut done), None);
        assert_eq!((done, l.active()), (vec![SeqId(0)], 0));
    }

    #[test]
    fn a_cancelled_head_is_skipped_and_its_share_given_back() {
        // Three 1 MB transfers at 1 GB/s from t = 0; the first to finish is cancelled at
        // 1.5 ms (0.5 MB each across): the other two share from then, 0.5 MB left each,
        // done together at 2.5 ms.
        let mut l = Link::new(SimDuration::ZERO, Some(1e9));
        let (t0, _) = l.start(SimTime(0), SeqId(0), Bytes(1_000_000));
        l.start(SimTime(0), SeqId(1), Bytes(1_000_000));
        l.start(SimTime(0), SeqId(2), Bytes(1_000_000));
        assert_eq!(l.remove(SimTime(1_500_000), t0), Some(SimTime(2_500_000)));
        let mut done = Vec::new();
        assert_eq!(l.complete(SimTime(2_500_000), &mut done), None);
        assert_eq!(done, vec![SeqId(1), SeqId(2)]);
        assert_eq!(l.active(), 0);
    }
}
