//! The single-server case against closed-form queueing results.
//!
//! One mixed instance with `max_seqs = 1` and the `rates` cost model is a FCFS single
//! server; with Poisson arrivals the mean wait in queue is
//! M/M/1: Wq = ρ·E[S] / (1 − ρ), M/D/1 (Pollaczek–Khinchine): Wq = ρ·E[S] / (2 (1 − ρ)).

use simctl_engine::examples::single_server;
use simctl_engine::prelude::*;

const REQUESTS: u64 = 250_000;
const MEAN_SERVICE_S: f64 = 0.010;
// Service rate of the example server (tokens per second).
const TOK_S: f64 = 100_000.0;

struct Waits {
    sum_wait_s: f64,
    sum_service_s: f64,
    n: u64,
}

impl Recorder for Waits {
    fn on_request(&mut self, r: &RequestRecord) {
        assert_eq!(r.outcome, Outcome::Finished);
        let service = f64::from(r.prompt_tokens.get()) / TOK_S;
        self.sum_wait_s += r.ttft().unwrap().as_secs_f64() - service;
        self.sum_service_s += service;
        self.n += 1;
    }
}

fn mean_wait(rho: f64, deterministic: bool) -> (f64, f64) {
    let spec = single_server(rho, MEAN_SERVICE_S, deterministic, REQUESTS);
    let mut w = Waits { sum_wait_s: 0.0, sum_service_s: 0.0, n: 0 };
    Simulation::new(&spec.validate().unwrap()).unwrap().run(&mut w);
    assert_eq!(w.n, REQUESTS);
    (w.sum_wait_s / w.n as f64, w.sum_service_s / w.n as f64)
}

#[test]
fn m_m_1_mean_wait_matches_closed_form() {
    let rho = 0.5;
    let (wq, es) = mean_wait(rho, false);
    // Lengths are whole tokens (ceil of an exponential), so use the measured E[S]; the
    // second moment of a ceiled exponential differs from 2·E[S]² by under 0.1% here.
    let expected = rho * es / (1.0 - rho);
    let err = (wq / expected - 1.0).abs();
    eprintln!("M/M/1 rho={rho}: Wq {wq:.6}s vs {expected:.6}s ({:+.2}%)", (wq / expected - 1.0) * 100.0);
    assert!(err < 0.02, "M/M/1 Wq = {wq:.6}s, closed form {expected:.6}s, error {:.2}%", err * 100.0);
}

#[test]
fn m_d_1_mean_wait_matches_pollaczek_khinchine() {
    let rho = 0.7;
    let (wq, es) = mean_wait(rho, true);
    assert!((es - MEAN_SERVICE_S).abs() < 1e-12);
    let expected = rho * es / (2.0 * (1.0 - rho));
    let err = (wq / expected - 1.0).abs();
    eprintln!("M/D/1 rho={rho}: Wq {wq:.6}s vs {expected:.6}s ({:+.2}%)", (wq / expected - 1.0) * 100.0);
    assert!(err < 0.02, "M/D/1 Wq = {wq:.6}s, closed form {expected:.6}s, error {:.2}%", err * 100.0);
}
