//! Replaying measured serving rows with the zero-shot kernel model: deterministic, each
//! deployment's parts read the way their formats and parallelism say.
//!
//! `data/silicon_subset.csv` holds vLLM rows of NVIDIA AIConfigurator's `silicon_sample.csv`
//! (Apache-2.0, see `data/README.md`). Accuracy is not asserted here: it is reported, held
//! out by GPU, by `cargo run --release -p simctl-calibration --example zero_shot` (see
//! `docs/zero-shot.md`). These tests catch a broken replay instead: a GPU, a format or a
//! parallelism read wrong moves predictions by factors, not percent.

use simctl_calibration::silicon::{self, Client, GpuModel};
use simctl_engine::catalogue;
use simctl_engine::kernels;

const SUBSET: &str = include_str!("data/silicon_subset.csv");

/// A replay within this factor of the measurement is not broken (the model's held-out
/// errors are tens of percent; a wrong GPU, format or TP is a factor of 2 to 10).
const ROW_FACTOR: f64 = 4.0;

#[test]
fn every_subset_row_replays_within_a_small_factor_of_its_measurement() {
    let rows = silicon::parse_csv(SUBSET).expect("the committed subset parses");
    assert!(rows.len() >= 10, "the subset has {} rows", rows.len());
    let mut checked = 0;
    for r in rows.iter().filter(|r| r.parallel.attention_dp <= 1) {
        let dep = silicon::deployment(r).unwrap_or_else(|e| panic!("{}: {e}", r.id));
        assert!(kernels::tables(&dep.gpu.name, r.backend).is_some(), "{}: {} has tables", r.id, dep.gpu.name);
        let model = GpuModel::Kernels(kernels::default_overheads(r.backend));
        let p = silicon::predict(r, &dep, &model, Client::default()).unwrap_or_else(|e| panic!("{}: {e}", r.id));
        assert_eq!(p, silicon::predict(r, &dep, &model, Client::default()).unwrap(), "{}: deterministic", r.id);
        for (what, pred, meas) in [("TTFT", p.ttft_ms, r.ttft_ms), ("TPOT", p.tpot_ms, r.tpot_ms)] {
            assert!(pred / meas < ROW_FACTOR && meas / pred < ROW_FACTOR, "{}: {what} predicted {pred:.2} ms, measured {meas:.2} ms", r.id);
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked} rows replayed");
}

#[test]
fn number_formats_move_the_prediction_the_way_the_bytes_do() {
    // The same deployment in FP8 decodes faster than in BF16 (half the weight bytes, the FP8
    // GEMM tables), and the replay is deterministic.
    let rows = silicon::parse_csv(SUBSET).unwrap();
    let r = rows.iter().find(|r| r.model_path.contains("Llama-3.1-70B")).expect("a Llama-3.1-70B row");
    let dep = silicon::deployment(r).unwrap();
    let model = GpuModel::Kernels(kernels::default_overheads(r.backend));
    let fp8 = silicon::predict(r, &dep, &model, Client::default()).unwrap();
    let mut bf16 = dep.clone();
    bf16.model = bf16.model.with_formats(catalogue::NumberFormat::Bf16, catalogue::NumberFormat::Bf16, catalogue::NumberFormat::Bf16);
    let wide = silicon::predict(r, &bf16, &model, Client::default()).unwrap();
    assert!(wide.tpot_ms > 1.3 * fp8.tpot_ms, "BF16 {:.2} ms vs FP8 {:.2} ms", wide.tpot_ms, fp8.tpot_ms);
}
