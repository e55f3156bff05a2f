//! `simctl validate`: the same scenario simulated and run live at several loads, and the
//! signed error of the simulation per metric; `--replay` re-simulates a recorded validation.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser};
use simctl_reports::Summary;
use simctl_reports::validation::{ErrorRow, LoadRecord, RECORD_FILE, Record, Targets, errors, label_dir, render};

use crate::bad;
use crate::scenario::{self, Loaded};

/// Exit status when an error leaves its target (with --strict).
pub const EXIT_OUTSIDE_TARGET: u8 = 3;

/// Measure how far the simulation is from the real engines, at several loads.
///
/// First measures the engines' capacity: the scenario's requests sent all at once (its rate
/// parameter set very high), throughput over the run. Then, for each load (a fraction of that
/// capacity), runs the scenario live against the engines and in the simulator (with
/// --profile as the performance model of every hardware of the scenario), with the same seed,
/// and prints the signed error of the simulation, (sim − live) / live, for TTFT, TPOT, ITL and
/// E2E at p50/p90/p95/p99 and for throughput. Targets: p50 within 5%, p90 and p95 within 10%,
/// throughput within 3%; `*` marks an error outside its target.
///
/// Writes, under --out: capacity/ (the burst, live and simulated), load-30/live,
/// load-30/sim, ... (what `simctl live --out` and `simctl run --out` write; `simctl compare`
/// reads them), the scenario and the profile, validation.csv (one row per load, metric and
/// statistic) and validation.json (everything, and how to replay it). `simctl validate
/// --replay DIR` simulates a recorded validation again, without engines, against its live
/// records: the check that keeps the model from regressing.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  simctl validate scenarios/dynamic_router.scn --profile profiles/tiny.yaml \\\n      --endpoint decode=http://127.0.0.1:8011 \\\n      --endpoint decode=http://127.0.0.1:8012 --out out/validate\n  simctl validate scenarios/dynamic_router.scn --profile p.yaml \\\n      --endpoint http://127.0.0.1:8011 --endpoint http://127.0.0.1:8012 \\\n      --loads 50%,90% --capacity 20/s --out out/v2\n  simctl validate --replay validation/tiny-dynamic_router --strict\n\nExit status: 0 done, 3 an error outside its target (with --strict),\n2 bad input, 1 other errors."
)]
pub struct ValidateArgs {
    /// Scenario file; omit for the embedded dynamic_router scenario.
    #[arg(value_name = "SCENARIO.scn", conflicts_with = "replay")]
    scenario: Option<PathBuf>,
    /// An engine, as for `simctl live`: `POOL=URL`, `INSTANCE=URL`, or `URL`; repeat.
    #[arg(long = "endpoint", value_name = "POOL=URL")]
    endpoints: Vec<String>,
    /// A profile from `simctl calibrate`: the performance model of every hardware of the
    /// scenario in the simulated runs (default: the scenario's own).
    #[arg(long, value_name = "PROFILE.yaml")]
    profile: Option<PathBuf>,
    /// Loads to compare at, as fractions of the measured capacity.
    #[arg(long, value_name = "LOADS", value_delimiter = ',', default_value = "30%,60%,85%")]
    loads: Vec<String>,
    /// The scenario's parameter that sets the arrival rate.
    #[arg(long, value_name = "PARAM", default_value = "arrival_rate")]
    rate_param: String,
    /// The rate parameter is a trace replay's `speedup` (a multiplier), not a rate: loads
    /// are set through it from the trace's own arrival rate at speedup 1.
    #[arg(long)]
    speedup: bool,
    /// The engines' capacity in requests per second (`20/s`), instead of measuring it.
    #[arg(long, value_name = "RATE")]
    capacity: Option<String>,
    /// Override a parameter or a setting, in every run: `requests=200`.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Override the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Served model to ask for (default: the first one the first engine lists).
    #[arg(long)]
    model: Option<String>,
    /// Write every run and the error tables into this folder.
    #[arg(long, value_name = "DIR", default_value = "out/validate")]
    out: PathBuf,
    /// Replace the results simctl wrote before in --out.
    #[arg(long)]
    force: bool,
    /// Simulate the validation recorded in DIR again and compare it with its live runs
    /// (no engines needed).
    #[arg(long, value_name = "DIR")]
    replay: Option<PathBuf>,
    /// Exit with status 3 when an error is outside its target.
    #[arg(long)]
    strict: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Print nothing on stdout but errors.
    #[arg(long, short)]
    quiet: bool,
}

const RATE_BURST: f64 = 1e6;

/// Runs another subcommand's argument parser on `argv`, so validate's runs are exactly what
/// the user would get running them by hand.
fn parse_args<A: Args>(argv: &[String]) -> Result<A> {
    #[derive(Parser)]
    struct Wrap<A: Args> {
        #[command(flatten)]
        a: A,
    }
    Ok(Wrap::<A>::try_parse_from(std::iter::once("simctl".to_string()).chain(argv.iter().cloned()))
        .map_err(|e| anyhow::anyhow!("internal: {e}"))?
        .a)
}

/// A run folder's summary, once every file of the folder checks (a record with requests.csv
/// missing, cut short or holding a NaN is refused, not replayed on its summary alone).
fn read_summary(dir: &Path) -> Result<Summary> {
    match simctl_reports::records::check_run_dir(dir) {
        Ok(s) => Ok(s),
        Err(e) => bad!("{e}"),
    }
}

fn parse_fraction(s: &str) -> Result<f64> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|x| x / 100.0),
        None => t.parse::<f64>(),
    };
    match v {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => bad!("`--loads {s}`: expected a fraction of capacity, such as `30%` or `0.3`"),
    }
}

fn parse_rate(s: &str) -> Result<f64> {
    let t = s.trim();
    let v = t.strip_suffix("/s").unwrap_or(t).trim().parse::<f64>();
    match v {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => bad!("`--capacity {s}`: expected requests per second, such as `20/s`"),
    }
}

fn load_1min() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

pub fn run(a: ValidateArgs) -> Result<ExitCode> {
    if let Some(dir) = &a.replay {
        return replay(dir, &a);
    }
    if a.endpoints.is_empty() {
        bad!(
            "give the engines to validate against: `--endpoint POOL=URL` for each instance (e.g. `--endpoint decode=http://127.0.0.1:8011`), or `--replay DIR` to re-simulate a recorded validation"
        );
    }
    let fractions: Vec<f64> = a.loads.iter().map(|l| parse_fraction(l)).collect::<Result<_>>()?;
    let given_capacity = a.capacity.as_deref().map(parse_rate).transpose()?;
    crate::interrupt::install();
    let out = a.out.clone();
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create output folder `{}`", out.display()))?;
    if out.join(RECORD_FILE).exists() && !a.force {
        bad!("`{}` already holds a validation; give a new folder, or --force to replace it", out.display());
    }
    // The scenario and the profile travel with the results.
    let (scenario_path, text) = match &a.scenario {
        Some(p) => (p.display().to_string(), std::fs::read_to_string(p).with_context(|| format!("cannot read `{}`", p.display()))?),
        None => (crate::cmd::live::DEFAULT_NAME.to_string(), crate::cmd::live::DEFAULT_TEXT.to_string()),
    };
    // A scenario that names files (traces) is run from where it is; the embedded one from its copy.
    let scenario_file = match &a.scenario {
        Some(p) => p.clone(),
        None => out.join("scenario.scn"),
    };
    crate::out::write(&out.join("scenario.scn"), text)?;
    let profile = match &a.profile {
        Some(p) => {
            let dst = out.join("profile.yaml");
            if std::fs::canonicalize(p).ok() != std::fs::canonicalize(&dst).ok() {
                std::fs::copy(p, &dst).with_context(|| format!("cannot read profile `{}`", p.display()))?;
            }
            // Every simulation reads the record's copy, as a replay does: the profile given may
            // change while the live runs go on (a new calibration written over it).
            Some(dst)
        }
        None => None,
    };
    let sets = profile_sets(&scenario_file, &a.set, profile.as_deref())?;
    let Some(sets) = sets else { return Ok(ExitCode::from(crate::EXIT_BAD_INPUT)) };
    // A profile measured under another load prices steps with other processes' time.
    if let Some(p) = &profile
        && let Ok(prof) = simctl_calibration::read_profile(p)
    {
        use simctl_calibration::check::{Background, background_differs};
        if let Some(w) = background_differs(Background::now(), Background::of(&prof)) {
            eprintln!("warning: {w}; `simctl calibrate --check {}` says whether the profile still fits", p.display());
        }
    }
    let say = |m: String| {
        if !a.quiet && !a.json {
            eprintln!("{m}");
        }
    };

    // A trace's own rate, to turn loads into speedups.
    let base_rate = if a.speedup {
        let dir = out.join("base-rate");
        run_sim(a.seed, &scenario_file, &sets, &format!("{}=1", a.rate_param), &dir)?;
        let r = arrival_rate(&dir.join("requests.csv"))?;
        say(format!("the trace arrives at {r:.3} req/s at {} = 1", a.rate_param));
        Some(r)
    } else {
        None
    };

    // Capacity: a burst of the scenario's requests.
    let (capacity, capacity_source, sim_capacity) = match given_capacity {
        Some(c) => (c, "given (--capacity)".to_string(), None),
        None => {
            say("capacity: the scenario's requests sent at once to the engines ...".into());
            let burst = rate_set(&a.rate_param, RATE_BURST, base_rate);
            let live = out.join("capacity/live");
            let r = run_live(&a, &scenario_file, &sets, &burst, &live);
            if crate::interrupt::interrupted() {
                eprintln!(
                    "interrupted ({}) while measuring capacity: no load ran, nothing recorded (the burst's live run is in {})",
                    crate::interrupt::signal_name(),
                    live.display()
                );
                return Ok(ExitCode::FAILURE);
            }
            r?;
            let s = read_summary(&live)?;
            let Some(c) = s.throughput_rps.filter(|c| *c > 0.0) else {
                anyhow::bail!("the capacity burst finished no request ({} failed): see {}", s.failed, live.display());
            };
            let sim = out.join("capacity/sim");
            run_sim(a.seed, &scenario_file, &sets, &burst, &sim)?;
            let sc = read_summary(&sim)?.throughput_rps;
            say(format!(
                "capacity: {c:.2} req/s live, {} simulated",
                sc.map_or("-".into(), |x| format!("{x:.2} req/s ({:+.1}%)", (x - c) / c * 100.0))
            ));
            (c, "measured: a burst of the scenario's requests".to_string(), sc)
        }
    };
    let targets = Targets::default();
    let mut loads = Vec::new();
    let mut rows = Vec::new();
    for (label, f) in a.loads.iter().zip(&fractions) {
        if crate::interrupt::interrupted() {
            break;
        }
        let rate = capacity * f;
        let d = label_dir(label);
        let rec =
            LoadRecord { label: label.trim().into(), fraction: *f, rate_rps: rate, live: format!("{d}/live"), sim: format!("{d}/sim") };
        let set = rate_set(&a.rate_param, rate, base_rate);
        say(format!("load {}: {rate:.2} req/s, live ...", rec.label));
        let live_run = run_live(&a, &scenario_file, &sets, &set, &out.join(&rec.live));
        if crate::interrupt::interrupted() {
            // This load's live run was cut short: its folder stays (marked incomplete), but
            // the record leaves the load out.
            break;
        }
        live_run?;
        run_sim(a.seed, &scenario_file, &sets, &set, &out.join(&rec.sim))?;
        let (sim, live) = (read_summary(&out.join(&rec.sim))?, read_summary(&out.join(&rec.live))?);
        let r = errors(&rec.label, &sim, &live, &targets);
        if !a.quiet && !a.json {
            println!("{}", render(&rec, &r));
            if let Some(why) = live.live.as_ref().and_then(|l| l.client_behind.clone()) {
                println!("  note: {why}");
            }
        }
        rows.extend(r);
        loads.push(rec);
    }
    let live_info = loads.first().and_then(|l| read_summary(&out.join(&l.live)).ok()).and_then(|s| s.live);
    let m = Record {
        format: 1,
        scenario_path,
        scenario: "scenario.scn".into(),
        profile: profile.as_ref().map(|_| "profile.yaml".into()),
        sets: a.set.clone(),
        seed: a.seed,
        rate_param: a.rate_param.clone(),
        base_rate_rps: base_rate,
        capacity_rps: capacity,
        capacity_source,
        sim_capacity_rps: sim_capacity,
        model: live_info.as_ref().map(|l| l.model.clone()),
        endpoints: live_info.map(|l| l.endpoints.into_values().collect()).unwrap_or_default(),
        load_1min: load_1min(),
        targets,
        loads,
        errors: rows,
    };
    finish(&out, &m, &a)
}

/// Writes validation.json and validation.csv, prints the summary line; the exit status.
fn finish(out: &Path, m: &Record, a: &ValidateArgs) -> Result<ExitCode> {
    crate::out::write(&out.join(RECORD_FILE), serde_json::to_string_pretty(m)? + "\n")?;
    crate::out::write(&out.join("validation.csv"), simctl_reports::validation::csv(&m.errors))?;
    let (judged, outside) = m.tally();
    if a.json {
        println!("{}", serde_json::to_string_pretty(m)?);
    } else if !a.quiet {
        println!(
            "{} of {judged} errors within target (p50 {}%, p90/p95 {}%, throughput {}%); wrote {}/validation.csv and validation.json",
            judged - outside.len(),
            m.targets.p50_pct,
            m.targets.p95_pct,
            m.targets.throughput_pct,
            out.display()
        );
    }
    if crate::interrupt::interrupted() {
        eprintln!(
            "interrupted ({}): validation.json holds the {} loads that finished; the others are missing",
            crate::interrupt::signal_name(),
            m.loads.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(verdict(a, &outside))
}

/// Status 3 with --strict when an error is outside its target.
fn verdict(a: &ValidateArgs, outside: &[&ErrorRow]) -> ExitCode {
    if a.strict && !outside.is_empty() { ExitCode::from(EXIT_OUTSIDE_TARGET) } else { ExitCode::SUCCESS }
}

/// The user's --set plus, with a profile, `hardware.NAME.profile=PATH` for every hardware
/// of the scenario. None when the scenario does not check (its problems are printed).
fn profile_sets(scenario: &Path, user: &[String], profile: Option<&Path>) -> Result<Option<Vec<String>>> {
    let overrides = scenario::parse_overrides(user)?;
    let spec = match scenario::load(Some(scenario), &overrides)? {
        Loaded::Spec(s) => s,
        Loaded::Invalid => return Ok(None),
    };
    let mut sets = user.to_vec();
    if let Some(p) = profile {
        let abs = std::fs::canonicalize(p).with_context(|| format!("cannot read profile `{}`", p.display()))?;
        for h in &spec.hardware {
            sets.push(format!("hardware.{}.profile={}", h.name, abs.display()));
        }
    }
    Ok(Some(sets))
}

/// The override that sets the arrival rate to `rate` req/s: the rate itself, or with a
/// trace's `base` rate the speedup that gives it.
fn rate_set(param: &str, rate: f64, base: Option<f64>) -> String {
    match base {
        Some(b) => format!("{param}={}", rate / b),
        None => format!("{param}={rate}/s"),
    }
}

/// Requests per second between the first and the last arrival of a requests.csv.
fn arrival_rate(path: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = header.iter().position(|h| *h == "arrival_s").context("requests.csv has no arrival_s column")?;
    let xs: Vec<f64> = lines.filter_map(|l| l.split(',').nth(col)?.parse().ok()).collect();
    let (lo, hi) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    if xs.len() < 2 || hi <= lo {
        bad!("the trace has fewer than two distinct arrival times: no rate to scale");
    }
    Ok((xs.len() - 1) as f64 / (hi - lo))
}

fn common(scenario: &Path, sets: &[String], rate: &str, seed: Option<u64>, out: &Path) -> Vec<String> {
    let mut v = vec![scenario.display().to_string()];
    for s in sets {
        v.push("--set".into());
        v.push(s.clone());
    }
    v.push("--set".into());
    v.push(rate.into());
    if let Some(s) = seed {
        v.push("--seed".into());
        v.push(s.to_string());
    }
    v.extend(["--out".into(), out.display().to_string(), "--force".into(), "--quiet".into(), "--no-plots".into()]);
    v
}

fn check(code: ExitCode, what: &str, dir: &Path) -> Result<()> {
    if code == ExitCode::from(crate::EXIT_BAD_INPUT) {
        bad!("the {what} run did not start (see above)");
    }
    if !dir.join("summary.json").exists() {
        anyhow::bail!("the {what} run wrote no summary under {}", dir.display());
    }
    Ok(())
}

fn run_live(a: &ValidateArgs, scenario: &Path, sets: &[String], rate: &str, dir: &Path) -> Result<()> {
    // The live run takes the profile's hardware too: it does not model anything, but binds
    // the same scenario.
    let mut argv = common(scenario, sets, rate, a.seed, dir);
    for e in &a.endpoints {
        argv.push("--endpoint".into());
        argv.push(e.clone());
    }
    if let Some(m) = &a.model {
        argv.push("--model".into());
        argv.push(m.clone());
    }
    let code = crate::cmd::live::run(parse_args(&argv)?)?;
    check(code, "live", dir)
}

fn run_sim(seed: Option<u64>, scenario: &Path, sets: &[String], rate: &str, dir: &Path) -> Result<()> {
    let argv = common(scenario, sets, rate, seed, dir);
    let code = crate::cmd::run::run(parse_args(&argv)?)?;
    check(code, "simulated", dir)
}

/// `--replay DIR`: the recorded loads simulated again and compared with their live runs.
fn replay(dir: &Path, a: &ValidateArgs) -> Result<ExitCode> {
    let path = dir.join(RECORD_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => bad!("cannot read `{}`: {e}; give a folder written by `simctl validate --out`", path.display()),
    };
    let mut m: Record = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => bad!("`{}` is not a validation record: {e}", path.display()),
    };
    // The recorded scenario: where it was (it may name traces beside it), else its copy.
    let original = PathBuf::from(&m.scenario_path);
    let scenario_file = if original.is_file() { original } else { dir.join(&m.scenario) };
    let profile = m.profile.as_ref().map(|p| dir.join(p));
    let Some(sets) = profile_sets(&scenario_file, &m.sets, profile.as_deref())? else {
        return Ok(ExitCode::from(crate::EXIT_BAD_INPUT));
    };
    // Every recorded live run checks before anything is simulated.
    for l in &m.loads {
        read_summary(&dir.join(&l.live))?;
    }
    let work = tempdir_for(dir);
    let mut rows = Vec::new();
    for l in &m.loads {
        let sim_dir = work.join(&l.sim);
        let set = rate_set(&m.rate_param, l.rate_rps, m.base_rate_rps);
        run_sim(m.seed, &scenario_file, &sets, &set, &sim_dir)?;
        let (sim, live) = (read_summary(&sim_dir)?, read_summary(&dir.join(&l.live))?);
        let r = errors(&l.label, &sim, &live, &m.targets);
        if !a.quiet && !a.json {
            println!("{}", render(l, &r));
        }
        rows.extend(r);
    }
    let _ = std::fs::remove_dir_all(&work);
    m.errors = rows;
    let (judged, outside) = m.tally();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else if !a.quiet {
        println!("replayed {}: {} of {judged} errors within the record's targets", dir.display(), judged - outside.len());
        if let Some(n) = &m.targets.note {
            println!("targets: {n}");
        }
        for r in &outside {
            println!(
                "  outside: load {} {} {}: {:+.1}% (target {}%)",
                r.load,
                r.metric,
                r.stat,
                r.error_pct.unwrap_or(f64::NAN),
                r.target_pct.unwrap_or(f64::NAN)
            );
        }
    }
    Ok(verdict(a, &outside))
}

/// A scratch folder for replayed simulations (the record itself is left as it is).
fn tempdir_for(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    std::env::temp_dir().join(format!("simctl-replay-{}-{name}", std::process::id()))
}
