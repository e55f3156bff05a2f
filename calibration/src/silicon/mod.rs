//! Zero-shot accuracy: replays NVIDIA AIConfigurator's measured serving rows
//! (`silicon_sample.csv`, Apache-2.0) in the simulator with the catalogue's roofline, fits
//! the per-GPU and per-engine efficiencies, and reports the error per group.
//!
//! Each row is a closed-loop client at a fixed concurrency with fixed prompt and output
//! lengths against one deployment (engine, GPU, parallelism, number formats). [`predict`]
//! rebuilds that deployment from the catalogue, drives the same closed loop with
//! [`Client::default`] (staggered starts, the first request of each user left out) and
//! returns the mean TTFT and TPOT. [`fit`] searches the efficiencies of one group that
//! minimise the error on the rows it is given; [`report`] tabulates median absolute
//! percentage errors and signed biases.

mod fit;
mod replay;
mod report;
mod row;

pub use fit::{FitResult, START, Split, fit_group, fit_overheads, group_key, kernel_start, log_errors, search_subset, split_of};
pub use replay::{Client, Deployment, GpuModel, Prediction, Ramp, catalogue_gpu, catalogue_model, deployment, formats, predict, scenario};
pub use report::{ErrorStats, Scored, error_stats, rows_csv, table};
pub use row::{CsvError, DisaggLayout, Mode, Parallelism, SiliconRow, parse_csv};
