//! One request's way through a live run: its flight, the task that sends it and reports
//! back, the router's bookkeeping when it is sent, and its record when it ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use simctl_engine::record::{Outcome, Reason, RequestRecord};
use simctl_engine::request::Request;
use simctl_engine::router::{InstanceId, RouterHost, max_hit_blocks};
use simctl_engine::time::{SimDuration, SimTime};
use simctl_engine::units::Tokens;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::LiveFigures;
use super::engines::{EngineAcc, remember_prompt};
use crate::client::{ClientError, CompletionRequest, EngineClient, Prompt, StreamedCompletion};
use crate::health::Change;
use crate::metrics::EngineMetrics;
use crate::prompt::PromptMaker;

/// How a request's stream ended, reported by its task.
pub(super) enum Msg {
    Sent { id: u64, at: Instant },
    First { id: u64, at: Instant },
    Done { id: u64, result: Result<StreamedCompletion, ClientError> },
    Scrape { i: usize, at: Instant, result: Result<EngineMetrics, ClientError> },
    Probe { i: usize, at: Instant, result: Result<(), ClientError> },
}

/// A request in flight.
pub(super) struct Flight {
    pub(super) req: Request,
    pub(super) inst: InstanceId,
    pub(super) sent: Option<SimTime>,
    pub(super) charged: Tokens,
    pub(super) first: Option<SimTime>,
    pub(super) user: u32,
    /// Whether it was sent again to another engine already (once at most).
    pub(super) rerouted: bool,
}

pub(super) fn reason_of(e: &ClientError) -> Reason {
    match e {
        ClientError::Timeout { .. } | ClientError::Stalled { .. } => Reason::Timeout,
        ClientError::Connect { .. } | ClientError::Dropped { .. } => Reason::Disconnected,
        _ => Reason::HttpError,
    }
}

/// The router's bookkeeping of sending `req` to `inst`: the prefix it expects cached there,
/// its counters, and the blocks the engine holds from now on (a later request it schedules
/// after this one finds them cached). Returns the prefill tokens charged to `inst`.
pub(super) fn dispatch(
    host: &mut RouterHost,
    acc: &mut EngineAcc,
    figures: &mut LiveFigures,
    clock: &mut u64,
    inst: InstanceId,
    req: &Request,
) -> Tokens {
    let bs = acc.block_size;
    let expected = host.cached_blocks(inst, req).get().min(max_hit_blocks(req, bs));
    figures.expected_prefix_hit_tokens += u64::from(expected) * u64::from(bs);
    let charged = host.dispatched(inst, req, true);
    remember_prompt(host, acc, inst, req, clock);
    charged
}

/// Sends `req` to `client` in a task of its own that reports back over `tx`: when it went
/// out, its first token, and how it ended.
pub(super) fn send(
    tasks: &mut JoinSet<()>,
    client: Arc<EngineClient>,
    tx: mpsc::UnboundedSender<Msg>,
    maker: PromptMaker,
    model: &str,
    req: &Request,
) {
    let id = req.id.0;
    let body = CompletionRequest {
        model: model.to_string(),
        prompt: Prompt::Tokens(Vec::new()),
        max_tokens: req.output_tokens.get(),
        temperature: 0.0,
        ignore_eos: true,
    };
    let r2 = req.clone();
    tasks.spawn(async move {
        // The prompt is built here, off the loop that keeps the schedule.
        let body = CompletionRequest { prompt: Prompt::Tokens(maker.prompt(&r2)), ..body };
        let _ = tx.send(Msg::Sent { id, at: Instant::now() });
        let first_tx = tx.clone();
        let result = client
            .complete_stream_observed(&body, move || {
                let _ = first_tx.send(Msg::First { id, at: Instant::now() });
            })
            .await;
        let _ = tx.send(Msg::Done { id, result });
    });
}

/// An engine taken out of routing or put back: the router's candidates follow, its scraper
/// probes /health while it is out, and the run keeps the event.
pub(super) fn note_change(
    host: &mut RouterHost,
    figures: &mut LiveFigures,
    out: &AtomicBool,
    inst: InstanceId,
    name: &str,
    c: Change,
    at: SimTime,
) {
    let what = match c {
        Change::Out(why) => {
            host.set_routable(inst, false);
            out.store(true, Ordering::Relaxed);
            format!("out of routing: {why}")
        }
        Change::Back => {
            host.set_routable(inst, true);
            out.store(false, Ordering::Relaxed);
            "back in routing: /health answered".to_string()
        }
    };
    figures.health_events.push((at, name.to_string(), what));
}

/// The record of `req` served by `inst`, before its outcome is known.
pub(super) fn record(req: &Request, inst: InstanceId) -> RequestRecord {
    RequestRecord {
        id: req.id,
        arrival: req.arrival,
        first_token: None,
        finish: None,
        prompt_tokens: req.prompt_tokens,
        output_tokens: req.output_tokens,
        generated_tokens: Tokens::ZERO,
        priority: req.priority,
        prefill_instance: Some(inst),
        decode_instance: Some(inst),
        preemptions: 0,
        cached_tokens: Tokens::ZERO,
        migrations: 0,
        class: req.class,
        max_itl: SimDuration::ZERO,
        outcome: Outcome::Unfinished,
        reason: None,
    }
}
