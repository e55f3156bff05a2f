//! # simctl-reports
//!
//! Turns what a run records into results: the summary of DESIGN §4's metrics (TTFT, TPOT,
//! pooled ITL, E2E, throughput, goodput, SLO attainment, cost, goodput per dollar, queue
//! depths), the per-request CSV table, and the human-readable table.
#![warn(missing_docs)]

pub mod capacity;
mod csv;
pub mod figures;
mod flatten;
pub mod frame;
pub mod html;
#[cfg(feature = "parquet")]
pub mod parquet;
mod percentiles;
pub mod plot;
mod recorder;
pub mod records;
pub mod residuals;
pub mod scorecard;
mod summary;
pub mod sweep;
mod table;
pub mod validation;

pub use csv::csv_text;
pub use flatten::{Cell, flatten_summary, mean_ci95};
pub use percentiles::{Distribution, percentile};
pub use recorder::{RunRecorder, write_requests_csv_header};
pub use summary::{ClassSummary, EngineAvailability, HealthEvent, LatencyBreakdown, LiveInfo, Summary};
pub use table::render_table;
