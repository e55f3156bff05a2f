//! # simctl-dsl
//!
//! The scenario language: a nom parser with spans, values with units as part of the syntax,
//! parameters overridable from the command line, and diagnostics that point at the mistake.
//!
//! ```
//! let src = r#"
//! name = "tiny"
//! model = llama_3_1_8b
//! hardware gpu { gpu = h100_sxm }
//! pool serve { role = mixed; instances = [2 x gpu] }
//! workload { arrivals = poisson(4/s); prompt = uniform(100, 1000); output = constant(64) }
//! run { duration = 10s }
//! "#;
//! let spec = simctl_dsl::load("tiny.scn", src, &[]).unwrap();
//! assert_eq!(spec.instance_count(), 2);
//! ```
#![warn(missing_docs)]

pub mod ast;
mod diag;
mod lower;
pub mod parser;
mod print;
mod value;

pub use diag::{Diagnostic, Diagnostics};
pub use lower::blocks::accepted_keys;
pub use lower::load;
pub use print::print;
