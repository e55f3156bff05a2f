//! Loading scenarios: a file or the embedded default, with `--set` overrides.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};
use simctl_engine::spec::ValidSpec;

/// The default scenario, compiled into the binary.
pub const DEFAULT_NAME: &str = "flagship_vs_mid.scn (embedded)";
/// Its text.
pub const DEFAULT_TEXT: &str = include_str!("../scenarios/flagship_vs_mid.scn");

/// Splits `key=value` arguments of `--set`.
pub fn parse_overrides(sets: &[String]) -> Result<Vec<(String, String)>> {
    sets.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
            _ => bail!("`--set {s}`: expected NAME=VALUE, e.g. `--set arrival_rate=36/s` or `--set router.policy=round_robin`"),
        })
        .collect()
}

/// Outcome of loading: a spec, or diagnostics already printed to stderr.
pub enum Loaded {
    /// The validated scenario.
    Spec(Box<ValidSpec>),
    /// Problems were found and printed.
    Invalid,
}

/// The name and text of `path`, or of the embedded default.
pub fn read(path: Option<&Path>) -> Result<(String, String)> {
    Ok(match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read scenario `{}`", p.display()))?;
            (p.display().to_string(), text)
        }
        None => (DEFAULT_NAME.to_string(), DEFAULT_TEXT.to_string()),
    })
}

/// Loads `path` (or the embedded default) with overrides; prints diagnostics on failure.
pub fn load(path: Option<&Path>, overrides: &[(String, String)]) -> Result<Loaded> {
    let (name, text) = read(path)?;
    match simctl_dsl::load(&name, &text, overrides) {
        Ok(spec) => {
            for w in spec.warnings() {
                eprintln!("warning: {name}: {w}");
            }
            Ok(Loaded::Spec(Box::new(spec)))
        }
        Err(diags) => {
            eprint!("{}", diags.render(std::io::stderr().is_terminal()));
            Ok(Loaded::Invalid)
        }
    }
}
