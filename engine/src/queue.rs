//! The event queue: a binary heap ordered by `(time, phase, seq)`, and beside it the step ends
//! of the instances, keyed by instance.
//!
//! `seq` is the insertion counter, so events at the same time and phase leave in the order
//! they were scheduled (FIFO), and a run is reproducible bit for bit. Payloads are small
//! `Copy` values stored inline; cancellation is lazy (the consumer ignores stale events).
//!
//! Two kinds of events are ordered by a key instead of their insertion: step ends (at most one
//! live per key, see [`EventQueue::schedule_key`]), which leave before every other event of
//! their time, in key order, and events pushed with [`EventQueue::push_ranked`]. Their place
//! in the order then depends only on what they are, not on when they were scheduled, which
//! lets fast-forward schedule them late (see `sim::fastforward`).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::time::SimTime;

/// Ordering class of events that share a timestamp: lower phases run first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Phase {
    /// Work that finishes (transfers; step ends, which are keyed, come before these): frees
    /// resources before anything new arrives.
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
    // phase in the top byte, insertion counter (or rank) below: one comparison orders both.
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
const NOT_DUE: u64 = u64::MAX;

/// What [`EventQueue::pop`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Popped<E> {
    /// The step end of this key.
    Key(u32),
    /// A queued event.
    Event(E),
}

/// A min-queue of events with a total, reproducible order.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<Entry<E>>>,
    /// Keyed step ends as `(time, key, generation)`; an entry whose generation is not its
    /// key's current one is stale. The top is never stale.
    keyed: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// Per key: when its live entry is due (`NOT_DUE`: none), and its generation.
    due: Vec<u64>,
    generation: Vec<u32>,
    keyed_live: usize,
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
        EventQueue {
            heap: BinaryHeap::with_capacity(1024),
            keyed: BinaryHeap::new(),
            due: Vec::new(),
            generation: Vec::new(),
            keyed_live: 0,
            next_seq: 0,
            popped: 0,
        }
    }

    /// Schedules `event` at `time` in `phase`, after the events of that time and phase
    /// scheduled before it.
    pub fn push(&mut self, time: SimTime, phase: Phase, event: E) {
        let order = ((phase as u64) << SEQ_BITS) | (self.next_seq & SEQ_MASK);
        self.next_seq += 1;
        self.heap.push(Reverse(Entry { time: time.0, order, event }));
    }

    /// Schedules `event` at `time` in `phase`, ordered among the events of that time and
    /// phase by `rank` (lowest first) rather than by insertion. A phase takes either ranked
    /// or counted events, never both.
    pub fn push_ranked(&mut self, time: SimTime, phase: Phase, rank: u32, event: E) {
        let order = ((phase as u64) << SEQ_BITS) | u64::from(rank);
        self.heap.push(Reverse(Entry { time: time.0, order, event }));
    }

    /// Schedules the step end of `key` at `time`, replacing the one pending, if any. Step
    /// ends leave before every other event of their time, in key order.
    pub fn schedule_key(&mut self, key: u32, time: SimTime) {
        let k = key as usize;
        if k >= self.due.len() {
            self.due.resize(k + 1, NOT_DUE);
            self.generation.resize(k + 1, 0);
        }
        if self.due[k] == NOT_DUE {
            self.keyed_live += 1;
        }
        self.generation[k] = self.generation[k].wrapping_add(1);
        self.due[k] = time.0;
        self.keyed.push(Reverse((time.0, key, self.generation[k])));
        self.drop_stale();
    }

    /// Drops the pending step end of `key`, if any.
    pub fn cancel_key(&mut self, key: u32) {
        let k = key as usize;
        if self.due.get(k).is_some_and(|&d| d != NOT_DUE) {
            self.due[k] = NOT_DUE;
            self.generation[k] = self.generation[k].wrapping_add(1);
            self.keyed_live -= 1;
            self.drop_stale();
        }
    }

    /// When the step end of `key` is due, if one is pending.
    pub fn key_due(&self, key: u32) -> Option<SimTime> {
        self.due.get(key as usize).filter(|&&d| d != NOT_DUE).map(|&d| SimTime(d))
    }

    /// Step ends pending.
    pub fn keyed_live(&self) -> usize {
        self.keyed_live
    }

    fn drop_stale(&mut self) {
        while let Some(&Reverse((_, key, g))) = self.keyed.peek() {
            if self.generation[key as usize] == g && self.due[key as usize] != NOT_DUE {
                break;
            }
            self.keyed.pop();
        }
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<(SimTime, Popped<E>)> {
        let keyed = self.keyed.peek().map(|&Reverse((t, _, _))| t);
        let queued = self.heap.peek().map(|Reverse(e)| e.time);
        let key_first = match (keyed, queued) {
            (None, None) => return None,
            (Some(k), Some(q)) => k <= q,
            (k, _) => k.is_some(),
        };
        self.popped += 1;
        if key_first {
            let Reverse((t, key, _)) = self.keyed.pop().expect("peeked");
            self.due[key as usize] = NOT_DUE;
            self.keyed_live -= 1;
            self.drop_stale();
            Some((SimTime(t), Popped::Key(key)))
        } else {
            let Reverse(e) = self.heap.pop().expect("peeked");
            Some((SimTime(e.time), Popped::Event(e.event)))
        }
    }

    /// The time of the earliest event, if any.
    pub fn peek_time(&self) -> Option<SimTime> {
        let keyed = self.keyed.peek().map(|&Reverse((t, _, _))| t);
        let queued = self.heap.peek().map(|Reverse(e)| e.time);
        match (keyed, queued) {
            (Some(k), Some(q)) => Some(SimTime(k.min(q))),
            (k, q) => k.or(q).map(SimTime),
        }
    }

    /// The time of the earliest event that is not a step end, if any.
    pub fn peek_queued_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|Reverse(e)| SimTime(e.time))
    }

    /// The earliest event is a step end: its time and key.
    pub fn peek_key(&self) -> Option<(SimTime, u32)> {
        let &Reverse((t, key, _)) = self.keyed.peek()?;
        if self.heap.peek().is_some_and(|Reverse(e)| e.time < t) {
            return None;
        }
        Some((SimTime(t), key))
    }

    /// Events waiting (step ends included).
    pub fn len(&self) -> usize {
        self.heap.len() + self.keyed_live
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events popped so far (the benchmark's events-per-second numerator).
    pub fn popped(&self) -> u64 {
        self.popped
    }

    /// Counts `n` events that were processed without going through the queue (steps
    /// fast-forwarded in bulk, steps started directly), so that counts do not depend on the
    /// shortcut.
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
        let order: Vec<char> = std::iter::from_fn(|| q.pop().map(|(_, e)| if let Popped::Event(e) = e { e } else { '?' })).collect();
        assert_eq!(order, vec!['c', 'e', 'b', 'd', 'a']);
        assert_eq!(q.popped(), 5);
    }

    #[test]
    fn step_ends_come_first_in_key_order_and_ranked_events_by_rank() {
        let mut q = EventQueue::new();
        q.push(SimTime(10), Phase::Completion, 'x');
        q.push_ranked(SimTime(10), Phase::Schedule, 2, 'c');
        q.push_ranked(SimTime(10), Phase::Schedule, 1, 'b');
        q.schedule_key(3, SimTime(10));
        q.schedule_key(1, SimTime(30));
        // Replaced: the entry at 30 is stale and never leaves.
        q.schedule_key(1, SimTime(10));
        q.schedule_key(2, SimTime(20));
        q.cancel_key(2);
        assert_eq!(q.len(), 5);
        assert_eq!(q.key_due(1), Some(SimTime(10)));
        assert_eq!(q.peek_key(), Some((SimTime(10), 1)));
        let order: Vec<String> = std::iter::from_fn(|| {
            q.pop().map(|(t, e)| match e {
                Popped::Key(k) => format!("{}:k{k}", t.0),
                Popped::Event(e) => format!("{}:{e}", t.0),
            })
        })
        .collect();
        assert_eq!(order, ["10:k1", "10:k3", "10:x", "10:b", "10:c"]);
        assert!(q.is_empty() && q.peek_time().is_none());
    }
}
