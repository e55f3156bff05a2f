//! `include "file"`: other scenario files' items, with their own spans; and paths that resolve
//! against the file that wrote them.

use crate::ast::{Item, shift_items};
use crate::parser::{self};
use crate::value::Val;

use super::Cx;
/// Includes nest at most this deep (the scenario file itself is not counted).
const MAX_INCLUDE_DEPTH: usize = 16;

impl Cx {
    /// The folder relative paths in `v` are resolved against: its scenario file's, or the
    /// working directory for values given on the command line.
    pub(crate) fn base_dir(&self, v: &Val) -> std::path::PathBuf {
        if v.src != 0 {
            return std::path::PathBuf::new();
        }
        let (src, _) = self.locate(v.span);
        std::path::Path::new(&self.diags.sources[src].0).parent().map(|p| p.to_path_buf()).unwrap_or_default()
    }

    /// Where a relative path in `v` is resolved, for error help.
    pub(crate) fn path_help(&self, v: &Val) -> String {
        if v.src != 0 {
            "paths given with `--set` are relative to the working directory".into()
        } else {
            "paths are relative to the scenario file".into()
        }
    }

    /// Replaces `include "file"` items by the file's items (recursively), each file's spans
    /// shifted to its own range of offsets.
    pub(crate) fn expand_includes(&mut self, items: Vec<Item>, src: usize, chain: &mut Vec<std::path::PathBuf>) -> Vec<Item> {
        let mut out = Vec::new();
        for it in items {
            let Item::Include { path, span } = it else {
                out.push(it);
                continue;
            };
            let dir = std::path::Path::new(&self.diags.sources[src].0).parent().map(|p| p.to_path_buf()).unwrap_or_default();
            let full = dir.join(&path);
            let canon = std::fs::canonicalize(&full).unwrap_or_else(|_| full.clone());
            let text = match std::fs::read_to_string(&full) {
                Ok(t) => t,
                Err(e) => {
                    self.error(
                        0,
                        span,
                        format!("cannot include `{}`: {e}", full.display()),
                        "not readable",
                        Some("include paths are relative to the including file".into()),
                    );
                    continue;
                }
            };
            if chain.contains(&canon) {
                self.error(
                    0,
                    span,
                    format!("`{}` includes itself (through {} files)", full.display(), chain.len()),
                    "include cycle",
                    Some("remove one of the includes".into()),
                );
                continue;
            }
            // `chain` holds the scenario file and the includes down to this one.
            if chain.len() > MAX_INCLUDE_DEPTH {
                self.error(
                    0,
                    span,
                    format!(
                        "including `{}` would nest includes {} deep; they nest at most {MAX_INCLUDE_DEPTH} deep",
                        full.display(),
                        chain.len()
                    ),
                    "includes nest too deep",
                    Some("include the files side by side from one file instead of each from the one before".into()),
                );
                continue;
            }
            let base = self.diags.sources.iter().map(|s| s.1.len() + 1).sum::<usize>() + self.files.last().map_or(0, |f| f.0);
            let idx = self.diags.sources.len();
            self.diags.sources.push((full.display().to_string(), text.clone()));
            self.files.push((base, idx));
            let (mut inner, syntax) = parser::parse_file(&text);
            for e in syntax {
                self.syntax(idx, e);
            }
            shift_items(&mut inner, base);
            chain.push(canon);
            out.extend(self.expand_includes(inner, idx, chain));
            chain.pop();
        }
        out
    }

    /// A path argument: relative to the scenario file when written in it, relative to the
    /// working directory when given on the command line (`--set trace=...`).
    pub(crate) fn path(&mut self, v: &Val, key: &str) -> Option<std::path::PathBuf> {
        let p = self.name(v, key)?;
        let base = self.base_dir(v);
        Some(if std::path::Path::new(&p).is_absolute() { p.into() } else { base.join(p) })
    }
}
