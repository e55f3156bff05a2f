//! Loading scenarios: a file or the embedded default, with `--set` overrides.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Result;

use crate::bad;
use simctl_engine::spec::ValidSpec;

/// The default scenario, compiled into the binary.
pub const DEFAULT_NAME: &str = "flagship_vs_mid.scn (embedded)";
/// Its text.
pub const DEFAULT_TEXT: &str = include_str!("../scenarios/flagship_vs_mid.scn");

/// Splits `key=value` arguments of `--set`; the same key twice is an error naming both.
pub fn parse_overrides(sets: &[String]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for s in sets {
        let (key, value) = match s.split_once('=') {
            Some((key, v)) if !key.trim().is_empty() => (key.trim().to_string(), v.trim().to_string()),
            _ => bad!("`--set {s}`: expected NAME=VALUE, e.g. `--set arrival_rate=36/s` or `--set router.policy=round_robin`"),
        };
        if let Some(first) = out.iter().position(|(x, _)| *x == key) {
            bad!("`--set {}` and `--set {s}` both set `{key}`; give it once", sets[first]);
        }
        out.push((key, value));
    }
    Ok(out)
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
            let text = match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) => bad!("cannot read scenario `{}`: {e}", p.display()),
            };
            (p.display().to_string(), text)
        }
        None => (DEFAULT_NAME.to_string(), DEFAULT_TEXT.to_string()),
    })
}

/// Loads `path` (or the embedded default) with overrides; prints diagnostics on failure.
pub fn load(path: Option<&Path>, overrides: &[(String, String)]) -> Result<Loaded> {
    let (name, text) = read(path)?;
    load_text(&name, &text, overrides)
}

/// Loads scenario `text` named `name` (an embedded one) with overrides.
pub fn load_text(name: &str, text: &str, overrides: &[(String, String)]) -> Result<Loaded> {
    let (name, text) = (name.to_string(), text.to_string());
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
