//! Every scenario in scenarios/ checks and runs.

use crate::{repo_root, simctl, stderr, stdout};

#[test]
fn every_scenario_file_checks() {
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join("scenarios"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "scn"))
        .map(|p| p.strip_prefix(repo_root()).unwrap().display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    // Every one checks, the trace replays included: the traces ship in `traces/`.
    for f in &files {
        let o = simctl(&["check", f]);
        assert!(o.status.success(), "{f} does not check:\n{}", stderr(&o));
        assert!(stdout(&o).contains(": ok ("), "{}", stdout(&o));
    }
}

#[test]
fn lab_scenarios_declare_the_lab_fleets() {
    let spec = |f: &str| {
        let text = std::fs::read_to_string(repo_root().join(f)).unwrap();
        simctl_dsl::load(f, &text, &[]).unwrap()
    };
    let fm = spec("scenarios/flagship_vs_mid.scn");
    let names: Vec<&str> = fm.pools.iter().flat_map(|p| p.instances.iter().map(|i| i.name.as_str())).collect();
    assert_eq!(names, ["pf0", "pf1", "dc_big", "dc_mid0", "dc_mid1", "dc_mid2"]);
    let hourly: f64 = fm.pools.iter().flat_map(|p| &p.instances).map(|i| fm.hardware[i.hardware].cost_per_hour).sum();
    assert!((hourly - 29.0).abs() < 1e-9);
    let simctl_engine::spec::ArrivalSpec::Poisson { rate_per_s, .. } = fm.workload.arrivals else { panic!() };
    assert!((rate_per_s - 24.0).abs() < 1e-9, "1.2 per 50 ms is 24/s");
    assert_eq!(fm.slo.ttft, Some(simctl_engine::time::SimDuration::from_millis(350)));
    assert_eq!(fm.slo.tpot, Some(simctl_engine::time::SimDuration::from_millis(45)));

    let mig = spec("scenarios/mig_slices.scn");
    let names: Vec<&str> = mig.pools.iter().flat_map(|p| p.instances.iter().map(|i| i.name.as_str())).collect();
    assert_eq!(names, ["pf0", "dc0", "dc1", "dc2", "dc3"]);
    let hourly: f64 = mig.pools.iter().flat_map(|p| &p.instances).map(|i| mig.hardware[i.hardware].cost_per_hour).sum();
    assert!((hourly - (5.5 + 2.0 * 1.8 + 2.0 * 2.2)).abs() < 1e-9);
}

#[test]
fn canonical_form_lowers_to_the_same_scenario() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo_root().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "scn") {
            continue;
        }
        let rel = path.strip_prefix(repo_root()).unwrap().display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let spec = match simctl_dsl::load(&rel, &text, &[]) {
            Ok(s) => s,
            // A scenario whose trace is absent (the shared traces live beside the repository).
            Err(d) if d.to_string().contains("cannot open trace") => {
                eprintln!("skipping {rel}: its trace is not present");
                continue;
            }
            Err(d) => panic!("{d}"),
        };
        let printed = simctl_dsl::print(&spec);
        let again = simctl_dsl::load("printed.scn", &printed, &[]).unwrap_or_else(|d| panic!("{rel} printed:\n{printed}\n{d}"));
        assert_eq!(again, spec, "{rel} round trip; printed:\n{printed}");
        assert_eq!(simctl_dsl::print(&again), printed, "printing is stable");
        n += 1;
    }
    assert!(n >= 8, "{n}");
    // The CLI shows it.
    let o = simctl(&["check", "--print", "scenarios/flagship_vs_mid.scn"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("instance dc_mid2 { hardware = dc_mid; tp = 1 }"), "{}", stdout(&o));
}

#[test]
fn kernel_model_overheads_are_read_from_the_hardware_block() {
    use simctl_engine::kernels::{KernelOverheads, default_overheads};
    use simctl_engine::spec::PerfSpec;
    use simctl_engine::time::SimDuration;
    let overheads = |extra: &str| {
        let text = format!(
            "model = llama_3_1_8b\nhardware h {{ gpu = h100_sxm\n{extra} }}\npool p {{ role = mixed\n instances = [h] }}\n\
             workload {{ arrivals = poisson(1/s)\n prompt = constant(100)\n output = constant(10) }}\nrun {{ requests = 5 }}\n"
        );
        let spec = simctl_dsl::load("t.scn", &text, &[]).unwrap_or_else(|d| panic!("{d}"));
        match &spec.hardware[0].perf {
            PerfSpec::Kernels { overheads, .. } => *overheads,
            p => panic!("a GPU with tables and no roofline key gets the kernel model, not {p:?}"),
        }
    };
    let d = default_overheads(simctl_engine::catalogue::Backend::Vllm);
    assert_eq!(overheads(""), d);
    // `layer_overhead` is a key of both models: it keeps the kernel model and sets its per-layer time.
    let us = SimDuration::from_micros;
    let set = overheads(
        "layer_overhead = 20us\n step_overhead = 1ms\n seq_overhead = 3us\n prefill_layer_overhead = 100us\n prefill_moe_layer_overhead = 0.4ms",
    );
    assert_eq!(
        set,
        KernelOverheads { step: us(1000), per_layer: us(20), per_seq: us(3), prefill_per_layer: us(100), prefill_per_moe_layer: us(400) }
    );
}
