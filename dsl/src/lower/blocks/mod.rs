//! Lowering of each block kind, one module per kind.

mod hardware;
mod model;
mod pool;
mod router;
mod scenario;
mod workload;
