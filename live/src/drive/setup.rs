//! What a scenario asks of its engines: one engine per instance, and the router a live run
//! uses (split pools become dual pools, since these engines do not move KV).

use std::sync::Arc;

use simctl_engine::router::{InstanceId, InstanceView};
use simctl_engine::spec::{PromptSplit, Role, RouterSpec, ValidSpec};
use simctl_engine::units::Blocks;

use super::engines::{Counters, EngineAcc, Instance};
use super::{Engine, LiveError, LiveOptions};
use crate::client::{ClientError, EngineClient};
use crate::preflight::{ContextLimit, Limits};

/// The router a live run uses: the scenario's, with the dual-pool split in place of KV
/// transfer between engines for a disaggregated scenario.
pub(super) fn live_router(spec: &ValidSpec) -> Result<(RouterSpec, Option<u32>), LiveError> {
    let prefill: Vec<usize> = spec.pools.iter().enumerate().filter(|(_, p)| p.role == Role::Prefill).map(|(i, _)| i).collect();
    let decode: Vec<usize> = spec.pools.iter().enumerate().filter(|(_, p)| p.role == Role::Decode).map(|(i, _)| i).collect();
    if prefill.is_empty() && decode.is_empty() {
        let at = spec.router.split.map(|s| s.at);
        return Ok((spec.router.clone(), at));
    }
    let ([p], [d]) = (prefill.as_slice(), decode.as_slice()) else {
        return Err(LiveError::Setup(format!(
            "live mode runs split pools as the original lab's dual pools, which needs one prefill and one decode pool; this scenario has {} prefill and {} decode pools",
            prefill.len(),
            decode.len()
        )));
    };
    let Some(at) = spec.pools[*d].local_prefill_threshold else {
        return Err(LiveError::Setup(format!(
            "pool `{}` decodes what pool `{}` prefills, but vLLM engines cannot move KV between them here; give pool `{}` `local_prefill = true` (and `local_prefill_threshold`) to run as dual pools: prompts at or above the threshold served whole on `{}`, the rest on `{}`",
            spec.pools[*d].name, spec.pools[*p].name, spec.pools[*d].name, spec.pools[*p].name, spec.pools[*d].name
        )));
    };
    let mut r = spec.router.clone();
    r.split = Some(PromptSplit { at, long_pool: *p, short_pool: *d });
    Ok((r, Some(at)))
}

/// The engines a run talks to, as they answered before it started.
pub(super) struct Connected {
    /// One client per instance.
    pub(super) clients: Vec<Arc<EngineClient>>,
    /// The served model the run asks for.
    pub(super) model: String,
    /// Each engine's context.
    pub(super) limits: Limits,
    /// Each engine's cache size and counters at the start.
    pub(super) accs: Vec<EngineAcc>,
}

/// Checks that every engine answers, serves the model, and says how big its cache and its
/// context are.
pub(super) async fn connect(
    spec: &ValidSpec,
    engines: &[Engine],
    opts: &LiveOptions,
    insts: &[Instance],
    router: &RouterSpec,
) -> Result<Connected, LiveError> {
    let engine_err = |k: usize, error: ClientError| LiveError::Engine { instance: engines[k].instance.clone(), error };

    let mut clients = Vec::new();
    for (k, e) in engines.iter().enumerate() {
        clients.push(Arc::new(EngineClient::new(&e.url, opts.client).map_err(|er| engine_err(k, er))?));
    }
    let mut model = opts.model.clone();
    let mut limits = Limits { split: router.split, ..Limits::default() };
    let mut accs = vec![EngineAcc::default(); engines.len()];
    for (k, c) in clients.iter().enumerate() {
        let models = c.models().await.map_err(|e| engine_err(k, e))?;
        let served: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        match &model {
            None => model = served.first().map(|s| s.to_string()),
            Some(m) if !served.contains(&m.as_str()) => {
                return Err(LiveError::Setup(format!(
                    "the engine of instance `{}` ({}) does not serve model `{m}`; it serves: {}",
                    engines[k].instance,
                    engines[k].url,
                    served.join(", ")
                )));
            }
            Some(_) => {}
        }
        let context = model.as_deref().and_then(|m| models.iter().find(|x| x.id == m)).and_then(|x| x.max_model_len);
        let m = c.metrics().await.map_err(|e| engine_err(k, e))?;
        // What one request can hold: the context, and the KV cache the engine reports
        // (`cache_config_info`), whichever is smaller.
        let kv_tokens = match (m.num_gpu_blocks(), m.block_size()) {
            (Some(b), Some(bs)) => u32::try_from(b.saturating_mul(u64::from(bs))).ok(),
            _ => None,
        };
        let (tokens, what) = match (context, kv_tokens) {
            (Some(c), Some(kv)) if kv < c => (Some(kv), "its KV cache"),
            (Some(c), _) => (Some(c), "its max_model_len"),
            (None, Some(kv)) => (Some(kv), "its KV cache"),
            (None, None) => (None, ""),
        };
        limits.per_instance.push(tokens.map(|tokens| ContextLimit {
            tokens,
            what,
            instance: engines[k].instance.clone(),
            url: engines[k].url.clone(),
        }));
        limits.pool_of.push(insts[k].0);
        let a = &mut accs[k];
        a.block_size = m.block_size().unwrap_or(spec.pools[insts[k].0].engine.block_size);
        a.blocks = m.num_gpu_blocks().unwrap_or(spec.kv_blocks()[k]);
        a.base = Counters::of(&m);
        a.last = a.base;
    }
    let Some(model) = model else {
        return Err(LiveError::Setup(format!("the engine at {} lists no model", engines[0].url)));
    };
    Ok(Connected { clients, model, limits, accs })
}

/// The view the policies read: the scenario's instances with the engines' caches. In dual
/// pools every engine serves whole requests.
pub(super) fn views(insts: &[Instance], accs: &[EngineAcc]) -> Vec<InstanceView> {
    insts
        .iter()
        .enumerate()
        .map(|(k, (pool, _, _, _, _, cost))| {
            let blocks = Blocks(u32::try_from(accs[k].blocks).unwrap_or(u32::MAX));
            InstanceView {
                id: InstanceId(k as u32),
                pool: *pool,
                role: Role::Mixed,
                hourly_cost: *cost,
                block_size: accs[k].block_size,
                waiting: 0,
                running: 0,
                queued_prefill_tokens: 0,
                kv_free_blocks: blocks,
                kv_total_blocks: blocks,
                prefix_hit_rate: 0.0,
                assigned: 0,
            }
        })
        .collect()
}
