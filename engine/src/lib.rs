//! # simctl-engine
//!
//! The deterministic, sans-IO core of simctl: simulated time in nanoseconds, an event queue
//! with a total order, seeded substreams, instances that batch like vLLM, KV caches, KV
//! transfers between prefill and decode pools, and the routing policies.
//!
//! A run takes a validated scenario ([`spec::ScenarioSpec::validate`] gives the
//! [`spec::ValidSpec`] a [`Simulation`] accepts) and reports every request to a
//! [`record::Recorder`]:
//!
//! ```
//! use simctl_engine::prelude::*;
//!
//! let spec = simctl_engine::examples::single_server(0.5, 1.0, false, 1_000).validate().unwrap();
//! let mut records = Vec::new();
//! let totals = Simulation::new(&spec).unwrap().run(&mut Collect(&mut records));
//! assert_eq!(records.len(), 1_000);
//! assert!(records.iter().all(|r| r.outcome == Outcome::Finished));
//! // An arrival and a step end per request, plus a step start when the server was idle.
//! assert!((2_000..=3_000).contains(&totals.events));
//!
//! struct Collect<'a>(&'a mut Vec<RequestRecord>);
//! impl Recorder for Collect<'_> {
//!     fn on_request(&mut self, r: &RequestRecord) { self.0.push(*r) }
//! }
//! ```
//!
//! The engine is steppable, so a driver outside it (live mode, a closed-loop client, a
//! co-simulation) can advance it in pieces, add requests and cancel them; stepping gives the
//! records of one run:
//!
//! ```
//! use simctl_engine::prelude::*;
//! use simctl_engine::record::NullRecorder;
//!
//! let spec = simctl_engine::examples::single_server(0.5, 1.0, false, 100).validate().unwrap();
//! let mut sim = Simulation::new(&spec).unwrap();
//! while let Some(t) = sim.next_event_time() {
//!     // ... look at sim.router().view(), submit or cancel requests ...
//!     sim.step_until(t + SimDuration::from_secs(1), &mut NullRecorder);
//! }
//! assert_eq!(sim.finish(&mut NullRecorder).arrived, 100);
//! ```
//!
//! Routing goes through a [`router::RouterHost`]: the policies, the view they read (gauges as
//! fresh as the telemetry interval allows, the router's own exact counters), the prefix
//! index fed by the caches' KV events, and the decision log — the same host live mode runs.
//!
//! The engine never reads the wall clock and never uses unseeded randomness: the same spec
//! and seed give the same records, bit for bit.
#![warn(missing_docs)]

pub mod batching;
pub mod catalogue;
pub mod cost;
pub mod examples;
mod ids;
mod instance;
pub mod inventory;
pub mod kernels;
pub mod kv;
pub mod profile;
pub mod queue;
pub mod record;
pub mod request;
pub mod rng;
pub mod router;
mod seq;
mod sim;
pub mod spec;
pub mod time;
pub mod trace;
pub mod units;
pub mod workload;

pub use sim::{Simulation, SubmitError};

/// The names most users need.
pub mod prelude {
    pub use crate::Simulation;
    pub use crate::record::{Outcome, Recorder, RequestRecord, RunTotals};
    pub use crate::spec::{ScenarioSpec, ValidSpec};
    pub use crate::time::{SimDuration, SimTime};
}
