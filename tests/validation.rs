//! The committed validation set: every record under `validation/records/` (live runs of real
//! engines, with the profile and scenario they ran) simulated again; the test fails when an
//! error leaves the record's target, so the model cannot drift from the measured engines
//! unnoticed.

use std::time::Duration;

use crate::{repo_root, stderr, stdout};

#[test]
fn every_recorded_validation_replays_within_its_targets() {
    let root = repo_root().join("validation/records");
    let mut records: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("validation.json").is_file())
        .collect();
    records.sort();
    assert!(!records.is_empty(), "no records under {}", root.display());
    for dir in records {
        let d = dir.display().to_string();
        let o = crate::simctl_guarded(&["validate", "--replay", &d, "--strict"], Duration::from_secs(600));
        assert!(o.status.success(), "{d}: exit {:?}\n{}{}", o.status.code(), stdout(&o), stderr(&o));
        assert!(stdout(&o).contains("errors within the record's targets"), "{}", stdout(&o));
    }
}
