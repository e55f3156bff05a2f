//! Lowering of each block kind, one module per kind.

mod hardware;
mod model;
mod pool;
mod router;
mod scenario;
mod workload;

/// Every key the parser accepts, by block: what `scenarios/README.md` must document.
pub fn accepted_keys() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut router = router::ROUTER_KEYS.to_vec();
    for (_, keys) in router::ROUTER_PARAMS {
        router.extend_from_slice(keys);
    }
    vec![
        ("scenario", scenario::SCENARIO_KEYS.to_vec()),
        ("model", model::MODEL_KEYS.to_vec()),
        ("hardware", hardware::HARDWARE_KEYS.to_vec()),
        ("engine", hardware::ENGINE_KEYS.to_vec()),
        ("pool", pool::POOL_KEYS.to_vec()),
        ("instance", pool::INSTANCE_KEYS.to_vec()),
        ("link", scenario::LINK_KEYS.to_vec()),
        ("router", router),
        ("telemetry", scenario::TELEMETRY_KEYS.to_vec()),
        ("workload", workload::WORKLOAD_KEYS.to_vec()),
        ("class", workload::CLASS_KEYS.to_vec()),
        ("slo", workload::SLO_KEYS.to_vec()),
        ("run", scenario::RUN_KEYS.to_vec()),
        ("sweep", scenario::SWEEP_KEYS.to_vec()),
    ]
}
