//! Per-request state while a request is in the system, in a slab reused as requests leave,
//! so memory follows the requests in flight, not the length of the run.

use std::ops::{Index, IndexMut};

use crate::request::Request;
use crate::router::InstanceId;
use crate::time::SimTime;

/// Slot of an in-flight sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqId(pub u32);

/// No instance yet.
pub(crate) const NO_INSTANCE: InstanceId = InstanceId(u32::MAX);

/// A request being served.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seq {
    pub req: Request,
    /// Tokens whose KV is computed on the current instance.
    pub computed: u32,
    /// Output tokens emitted so far.
    pub generated: u32,
    /// KV blocks held on the instance that holds this sequence's KV.
    pub blocks: u32,
    pub first_token: Option<SimTime>,
    pub last_token: SimTime,
    pub prefill_on: InstanceId,
    pub decode_on: InstanceId,
    pub preemptions: u32,
    /// Set when the sequence leaves its instance's running list at the end of a step.
    pub leaving: bool,
}

impl Seq {
    pub fn new(req: Request) -> Self {
        Seq {
            req,
            computed: 0,
            generated: 0,
            blocks: 0,
            first_token: None,
            last_token: req.arrival,
            prefill_on: NO_INSTANCE,
            decode_on: NO_INSTANCE,
            preemptions: 0,
            leaving: false,
        }
    }
    /// Tokens known so far: the prompt and every emitted output token.
    pub fn known(&self) -> u32 {
        self.req.prompt_tokens + self.generated
    }
    /// Whether the next step for this sequence is a single decode token.
    pub fn is_decoding(&self) -> bool {
        self.generated > 0 && self.known() - self.computed == 1
    }
}

/// Slots of in-flight sequences with a free list.
#[derive(Debug, Default)]
pub(crate) struct SeqSlab {
    slots: Vec<Seq>,
    free: Vec<u32>,
    live: usize,
    peak: usize,
}

impl SeqSlab {
    pub fn insert(&mut self, s: Seq) -> SeqId {
        self.live += 1;
        self.peak = self.peak.max(self.live);
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = s;
            SeqId(i)
        } else {
            self.slots.push(s);
            SeqId((self.slots.len() - 1) as u32)
        }
    }
    pub fn remove(&mut self, id: SeqId) {
        self.live -= 1;
        self.free.push(id.0);
    }
    /// Most sequences in flight at once.
    pub fn peak(&self) -> usize {
        self.peak
    }
    /// Ids of sequences still in flight, in slot order.
    pub fn live_ids(&self) -> Vec<SeqId> {
        let mut free = self.free.clone();
        free.sort_unstable();
        (0..self.slots.len() as u32).filter(|i| free.binary_search(i).is_err()).map(SeqId).collect()
    }
}

impl Index<SeqId> for SeqSlab {
    type Output = Seq;
    fn index(&self, id: SeqId) -> &Seq {
        &self.slots[id.0 as usize]
    }
}
impl IndexMut<SeqId> for SeqSlab {
    fn index_mut(&mut self, id: SeqId) -> &mut Seq {
        &mut self.slots[id.0 as usize]
    }
}
