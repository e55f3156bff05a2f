//! One module per subcommand.

pub mod calibrate;
pub mod catalogue;
pub mod check;
pub mod compare;
pub mod eval;
pub mod fake_engine;
pub mod live;
pub mod report;
pub mod run;
pub mod scorecard;
pub mod sweep;
pub mod topology;
pub mod trace;
pub mod validate;

/// Parquet copies of `DIR/NAME.csv` for each name, when built with the `parquet` feature;
/// returns the files written.
pub fn parquet_copies(dir: &std::path::Path, names: &[&str]) -> anyhow::Result<Vec<std::path::PathBuf>> {
    #[cfg(feature = "parquet")]
    {
        use anyhow::Context;
        let mut out = Vec::new();
        for n in names {
            let (csv, pq) = (dir.join(format!("{n}.csv")), dir.join(format!("{n}.parquet")));
            simctl_reports::parquet::csv_to_parquet(&csv, &pq).with_context(|| format!("cannot write `{}`", pq.display()))?;
            out.push(pq);
        }
        Ok(out)
    }
    #[cfg(not(feature = "parquet"))]
    {
        let _ = (dir, names);
        // Once per process (validate writes many run folders).
        static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        eprintln!("note: no Parquet files: this simctl was built without the `parquet` feature (cargo build --release --features parquet)");
        Ok(Vec::new())
    }
}
