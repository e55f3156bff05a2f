//! The event queue: a binary heap ordered by `(time, phase, seq)`.
//!
//! `seq` is the insertion counter, so events at the same time and phase leave in the order
//! they were scheduled (FIFO), and a run is reproducible bit for bit. Payloads are small
//! `Copy` values stored inline; cancellation is lazy (the consumer ignores stale events).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::time::SimTime;

/// Ordering class of events that share a timestamp: lower phases run first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Phase {
    /// Work that finishes (steps, transfers): frees resources before anything new arrives.
    Completion = 0,
    /// New work entering the system (arrivals, KV landing at a decode instance).
    Arrival = 1,
    /// Periodic control (telemetry refresh, migration planning).
    Control = 2,
    /// Instances deciding their next batch, after everything else at this instant.
    Schedule = 3,
}

#[derive(Clone, Copy, Debug)]
struct Entry<E> {
    time: u64,
    // phase in the top byte, insertion counter below: one comparison orders both.
    order: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.time == other.time && self.order == other.order
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.time, self.order).cmp(&(other.time, other.order))
    }
}

const SEQ_BITS: u32 = 56;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// A min-queue of events with a total, reproducible order.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<Entry<E>>>,
    next_seq: u64,
    popped: u64,
}

impl<E: Copy> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Copy> EventQueue<E> {
    /// An empty queue.
    pub fn new() -> Self {
        EventQueue { heap: BinaryHeap::with_capacity(1024), next_seq: 0, popped: 0 }
    }

    /// Schedules `event` at `time` in `phase`.
    pub fn push(&mut self, time: SimTime, phase: Phase, event: E) {
        let order = ((phase as u64) << SEQ_BITS) | (self.next_seq & SEQ_MASK);
        self.next_seq += 1;
        self.heap.push(Reverse(Entry { time: time.0, order, event }));
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let Reverse(e) = self.heap.pop()?;
        self.popped += 1;
        Some((SimTime(e.time), e.event))
    }

    /// The time of the earliest event, if any.
    pub fn peek_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|Reverse(e)| SimTime(e.time))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Events popped so far (the benchmark's events-per-second numerator).
    pub fn popped(&self) -> u64 {
        self.popped
    }

    /// Counts `n` events that were processed without going through the queue (steps
    /// fast-forwarded in bulk), so that counts do not depend on the shortcut.
    pub fn count_virtual(&mut self, n: u64) {
        self.popped += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_time_then_phase_then_insertion() {
        let mut q = EventQueue::new();
        q.push(SimTime(10), Phase::Schedule, 'a');
        q.push(SimTime(10), Phase::Arrival, 'b');
        q.push(SimTime(5), Phase::Schedule, 'c');
        q.push(SimTime(10), Phase::Arrival, 'd');
        q.push(SimTime(10), Phase::Completion, 'e');
        let order: Vec<char> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, vec!['c', 'e', 'b', 'd', 'a']);
        assert_eq!(q.popped(), 5);
    }
}
