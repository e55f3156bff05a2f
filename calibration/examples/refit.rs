//! Fits a profile's recorded samples again with today's fit, and prints both models' error
//! per probe class: what a change to the fit does to measurements already made.
//!
//! ```sh
//! cargo run --release -p simctl-calibration --example refit -- validation/profiles/tiny-vllm-cpu.yaml
//! ```

use simctl_calibration::fit::{self, Fit};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: refit PROFILE.yaml...");
        std::process::exit(2);
    }
    for path in args {
        let p = match simctl_calibration::read_profile(std::path::Path::new(&path)) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(2);
            }
        };
        let (budget, chunked) = (p.engine.max_batch_tokens, p.engine.chunked_prefill);
        let recorded = fit::quality(p.cost(), &p.samples, budget, chunked);
        let refit = match fit::fit(&p.samples, budget, chunked) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(1);
            }
        };
        println!("{path}");
        show("recorded", &recorded);
        show("refit", &refit);
        match refit.cost.beyond_cache {
            Some(k) => println!("  refit knee: {} decode context tokens, c7 {:.1} ns per token past it", k.tokens, k.extra_s * 1e9),
            None => println!("  refit knee: none (one rate for all decode context)"),
        }
    }
}

fn show(what: &str, f: &Fit) {
    let c = &f.cost.c;
    print!("  {what:<9} sse {:.4}  c0 {:.3} ms c4 {:.1} us c5 {:.1} ns |", f.sse_rel, c[0] * 1e3, c[4] * 1e6, c[5] * 1e9);
    for k in &f.classes {
        print!(" {} {:.1}%", k.class, k.mape_pct);
    }
    println!();
}
