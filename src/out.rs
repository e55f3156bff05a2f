//! Output folders that never mix two results nor lose one: a folder holding what simctl
//! wrote for another run or sweep is refused unless `--force`, which removes exactly those
//! files first (never the user's own); finished files are written under a temporary name and
//! renamed, so a reader never sees half a file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::bad;

/// Files and folders simctl writes into an output folder (runs, sweeps, capacity searches,
/// scorecards), with the Parquet copies.
const OURS: &[&str] = &[
    "summary.json",
    "requests.csv",
    "requests.parquet",
    "queue_depth.csv",
    "queue_depth.parquet",
    "gauges.csv",
    "gauges.parquet",
    "engines",
    "decisions.csv",
    "results.csv",
    "results.parquet",
    "points.csv",
    "points.parquet",
    "manifest.json",
    "find_max.json",
    "latency.jsonl",
    "tps_goodput.json",
    "sys_meta.json",
    "scorecard.simctl.json",
    "plots",
];

/// What simctl wrote in `dir` before, by name.
fn ours(dir: &Path) -> Vec<String> {
    OURS.iter().filter(|n| dir.join(n).exists()).map(|n| n.to_string()).collect()
}

/// Prepares `dir` for new results: creates it, or with `force` removes what simctl wrote
/// there before; refuses a folder holding another result without `force`.
pub fn prepare(dir: &Path, force: bool) -> Result<()> {
    let found = ours(dir);
    if !found.is_empty() {
        if !force {
            bad!(
                "`{}` already holds results ({}); give a new folder, or --force to replace them (only files simctl writes are removed)",
                dir.display(),
                found.join(", ")
            );
        }
        for name in &found {
            let p = dir.join(name);
            let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            r.with_context(|| format!("cannot remove `{}` (--force)", p.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create output folder `{}`", dir.display()))
}

/// The temporary name `path` is written under until [`commit`] renames it. The name is
/// remembered until then: a command that fails, or a second Ctrl-C, removes it.
pub fn partial(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    let p = path.with_file_name(name);
    crate::interrupt::track_partial(&p);
    p
}

/// Renames the finished `partial(path)` to `path`.
pub fn commit(path: &Path) -> Result<()> {
    let tmp = partial(path);
    let r = std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{}`", path.display()));
    crate::interrupt::untrack_partial(&tmp);
    r
}

/// Writes `bytes` to `path` through a temporary file.
pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    let tmp = partial(path);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    commit(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_folder_is_refused_and_force_removes_only_ours() {
        let dir = std::env::temp_dir().join(format!("simctl-out-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        prepare(&dir, false).unwrap();
        prepare(&dir, false).unwrap();
        std::fs::write(dir.join("summary.json"), "{}").unwrap();
        std::fs::create_dir_all(dir.join("plots")).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let e = prepare(&dir, false).unwrap_err().to_string();
        assert!(e.contains("already holds results (summary.json, plots)"), "{e}");
        prepare(&dir, true).unwrap();
        assert!(!dir.join("summary.json").exists() && !dir.join("plots").exists());
        assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine", "the user's file stays");
        write(&dir.join("x.json"), "1").unwrap();
        assert!(!partial(&dir.join("x.json")).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
