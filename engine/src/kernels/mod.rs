//! The zero-shot GPU model: step times composed from measured kernel times.
//!
//! NVIDIA AIConfigurator (github.com/ai-dynamo/aiconfigurator, Apache-2.0) measures, per GPU
//! and serving engine, the latency of each kernel a transformer step runs: GEMMs by `m`, `n`,
//! `k` and number format, prefill attention by batch and length, decode attention by batch
//! and context, the tensor-parallel all-reduce by message size and GPUs, and fused MoE by
//! tokens, expert shape and parallelism. `tools/kernels/convert.py` keeps the shapes of the
//! catalogue's models from those tables in `engine/kernels/` (one text file per GPU and
//! backend, embedded in the binary and parsed once on first use).
//!
//! [`KernelCost`] composes a step from them ([`compose`]), interpolating between measured
//! shapes ([`Curve`]) and, outside them, scaling the nearest measured point by the datasheet
//! roofline's ratio. [`KernelCost::extrapolations`] says where an instance leans on that
//! rule; `simctl check` prints it.

mod compose;
mod curve;
mod tables;

pub use compose::{Extrapolation, KernelCost, KernelOverheads, default_overheads};
pub use curve::Curve;
pub use tables::{AttnKey, BatchTable, KernelTables, MoeKey, all, has_tables, parse, shipped, tables};
