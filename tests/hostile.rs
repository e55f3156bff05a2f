//! Hostile and careless inputs (issue 26): every case gives a clear, located error or a
//! correct result; nothing is silently wrong, nothing hangs, nothing is lost.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{repo_root, simctl, stderr, stdout, temp_dir};

/// A guard against hangs, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(300);

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simctl")).args(args).current_dir(dir).output().expect("simctl runs")
}

/// The example profile with one line replaced.
fn profile_with(dir: &Path, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("profiles/example_h100_llama8b.yaml")).unwrap();
    assert!(text.contains(from), "{from}");
    let p = dir.join("p.yaml");
    std::fs::write(&p, text.replace(from, to)).unwrap();
    p
}

fn profile_scenario(dir: &Path) -> PathBuf {
    let scn = dir.join("s.scn");
    std::fs::write(
        &scn,
        "model = llama_3_1_8b\nhardware h { profile = \"p.yaml\"; cost = 3 $/h }\npool p { role = mixed; instances = [h] }\n\
         workload { arrivals = poisson(5/s); prompt = uniform(100, 200); output = uniform(10, 20) }\n\
         slo { ttft = 1s }\nrun { duration = 5s }\n",
    )
    .unwrap();
    scn
}

#[test]
fn profiles_with_negative_or_implausible_numbers_are_refused_at_their_line() {
    let dir = temp_dir("hostile-profile");
    let scn = profile_scenario(&dir);
    for (from, to, needle) in [
        ("c4_decode_seq_s: 0.00003", "c4_decode_seq_s: -0.5", "line 27: coefficients.c4_decode_seq_s = -0.5: must be a finite number"),
        ("c1_prefill_token_s: 0.0000275", "c1_prefill_token_s: -1e-5", "coefficients.c1_prefill_token_s = -1e-5"),
        ("frontend_s: 0.0", "frontend_s: -0.2", "coefficients.frontend_s = -0.2"),
        ("c0_step_s: 0.0058", "c0_step_s: 5800", "coefficients.c0_step_s = 5800: must be a finite number of seconds from 0 to 60"),
        ("c0_step_s: 0.0058", "c0_step_s: .nan", "coefficients.c0_step_s = NaN"),
        ("kv_capacity_blocks: 27000", "kv_capacity_blocks: 0", "kv_capacity_blocks = 0: must be at least 1"),
        ("gpu_memory_utilization: 0.9", "gpu_memory_utilization: 1.5", "engine.gpu_memory_utilization = 1.5"),
    ] {
        profile_with(&dir, from, to);
        let o = run_in(&dir, &["run", scn.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{to}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{to}: {}", stderr(&o));
    }
    // A written-out fitted model is held to the same rule.
    let inline = dir.join("inline.scn");
    std::fs::write(
        &inline,
        "model = llama_3_1_8b\nhardware h { fitted = [0.005, 0.00002, 0, 0, -0.5, 0]; kv_capacity = 100000 tok; cost = 3 $/h }\n\
         pool p { role = mixed; instances = [h] }\nworkload { arrivals = poisson(5/s); prompt = uniform(100, 200); output = uniform(10, 20) }\n\
         run { duration = 5s }\n",
    )
    .unwrap();
    let o = run_in(&dir, &["check", inline.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("coefficient c4 is -0.5"), "{}", stderr(&o));
}

#[test]
fn a_profile_whose_steps_cost_nothing_is_run_with_a_warning() {
    let dir = temp_dir("hostile-zero-profile");
    let scn = profile_scenario(&dir);
    let text = std::fs::read_to_string(repo_root().join("profiles/example_h100_llama8b.yaml")).unwrap();
    let zero: String =
        text.lines()
            .map(|l| {
                if l.trim_start().starts_with('c') && l.contains("_s:") {
                    format!("{}: 0.0", l.split(':').next().unwrap())
                } else {
                    l.into()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
    std::fs::write(dir.join("p.yaml"), zero + "\n").unwrap();
    let o = run_in(&dir, &["run", scn.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("every step coefficient is 0: steps take no time"), "{}", stderr(&o));
}

#[test]
fn without_an_slo_there_is_no_attainment_and_no_goodput() {
    let dir = temp_dir("hostile-no-slo");
    let scn = dir.join("noslo.scn");
    std::fs::write(
        &scn,
        "model = llama_3_1_8b\nparam arrival_rate = 40/s\nhardware h { gpu = h100_sxm }\npool p { role = mixed; instances = [h] }\n\
         workload { arrivals = poisson(arrival_rate); prompt = uniform(100, 2000); output = uniform(10, 200) }\nrun { duration = 10s }\n",
    )
    .unwrap();
    let out = dir.join("out");
    let o = simctl(&["run", scn.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = json(&out.join("summary.json"));
    for k in ["slo_attainment", "goodput_rps", "goodput_tok_s", "goodput_tok_per_usd"] {
        assert!(s[k].is_null(), "{k} = {} without an SLO", s[k]);
    }
    assert!(s["completed"].as_u64().unwrap() > 0);
    // requests.csv: the `good` cell is empty, not 1.
    let text = std::fs::read_to_string(out.join("requests.csv")).unwrap();
    let mut lines = text.lines();
    let good = lines.next().unwrap().split(',').position(|c| c == "good").unwrap();
    assert!(lines.all(|l| l.split(',').nth(good) == Some("")), "every good cell empty");
    // The table says `-`.
    let line = stdout(&o).lines().find(|l| l.starts_with("slo attainment")).unwrap().to_string();
    assert!(line.contains(" - %"), "{line}");
    // With an SLO given on the command line the same run is judged.
    let judged = dir.join("judged");
    let o = simctl(&["run", scn.to_str().unwrap(), "--set", "slo.ttft=500ms", "--out", judged.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = json(&judged.join("summary.json"))["slo_attainment"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&a));
    // A capacity search needs an SLO to search against.
    let o = simctl(&["sweep", scn.to_str().unwrap(), "--find-max", "arrival_rate"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--find-max searches for the largest arrival_rate that meets an SLO, and the scenario gives none"));
}

fn trace_scenario(dir: &Path, trace: &str) -> PathBuf {
    let scn = dir.join("t.scn");
    std::fs::write(
        &scn,
        format!(
            "model = llama_3_1_8b\nhardware h {{ gpu = h100_sxm }}\npool p {{ role = mixed; instances = [h] }}\nworkload {{ arrivals = trace(\"{trace}\") }}\n"
        ),
    )
    .unwrap();
    scn
}

#[test]
fn traces_with_nan_negative_or_no_requests_are_errors_in_every_format() {
    let dir = temp_dir("hostile-traces");
    let cases: [(&str, &str, &str); 9] = [
        (
            "first_nan.csv",
            "arrival_s,prompt_tokens,output_tokens\nNaN,100,10\n1.0,100,10\n",
            "first_nan.csv:2: arrival `NaN` must be a finite time >= 0",
        ),
        ("later_nan.csv", "arrival_s,prompt_tokens,output_tokens\n0.0,100,10\nNaN,100,10\n", "later_nan.csv:3: arrival `NaN`"),
        (
            "negative.csv",
            "arrival_ms,prompt_tokens,output_tokens\n-5,100,10\n",
            "negative.csv:2: arrival `-5` must be a finite time >= 0 (milliseconds)",
        ),
        ("header_only.csv", "arrival_s,prompt_tokens,output_tokens\n", "header_only.csv: the trace holds no requests"),
        ("empty.csv", "", "empty.csv:1: the file is empty"),
        ("empty.jsonl", "", "empty.jsonl: the trace holds no requests"),
        ("blank.jsonl", "\n   \n\n", "blank.jsonl: the trace holds no requests"),
        (
            "neg.jsonl",
            "{\"timestamp\": -3, \"input_length\": 10, \"output_length\": 2}\n",
            "neg.jsonl:1: `timestamp` -3 must be a finite number",
        ),
        ("header_only_azure.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n", "header_only_azure.csv: the trace holds no requests"),
    ];
    for (name, text, needle) in cases {
        std::fs::write(dir.join(name), text).unwrap();
        let scn = trace_scenario(&dir, name);
        let o = run_in(&dir, &["run", scn.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{name}: {}", stderr(&o));
        let o = run_in(&dir, &["trace", "stats", name]);
        assert_eq!(o.status.code(), Some(2), "trace stats {name}: {}", stderr(&o));
    }
    // Every line invalid and skipped is still a trace of nothing.
    std::fs::write(dir.join("all_bad.csv"), "arrival_s,prompt_tokens,output_tokens\nx,1,1\ny,1,1\n").unwrap();
    let scn = dir.join("skip.scn");
    std::fs::write(
        &scn,
        "model = llama_3_1_8b\nhardware h { gpu = h100_sxm }\npool p { role = mixed; instances = [h] }\nworkload { arrivals = trace(\"all_bad.csv\", skip_invalid = true) }\n",
    )
    .unwrap();
    let o = run_in(&dir, &["run", scn.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("the trace holds no requests (2 invalid lines skipped)"), "{}", stderr(&o));
}

#[test]
fn trace_stats_of_arrivals_centuries_apart_do_not_allocate_per_minute() {
    let dir = temp_dir("hostile-centuries");
    // 285 years in seconds: a per-minute array would need 1.2 GB.
    std::fs::write(dir.join("far.csv"), "arrival_s,prompt_tokens,output_tokens\n0,10,2\n9000000000,10,2\n").unwrap();
    let o = run_in(&dir, &["trace", "stats", "far.csv", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let s = if v.is_array() { v[0].clone() } else { v };
    assert_eq!((s["requests"].as_u64(), s["peak_per_minute"].as_u64(), s["min_per_minute"].as_u64()), (Some(2), Some(1), Some(0)));
}

#[test]
fn include_depth_is_reported_as_depth_and_cycles_as_cycles() {
    let dir = temp_dir("hostile-includes");
    for i in 1..=20 {
        std::fs::write(dir.join(format!("f{i}.scn")), format!("include \"f{}.scn\"\n", i + 1)).unwrap();
    }
    std::fs::write(dir.join("f21.scn"), "slo { ttft = 1s }\n").unwrap();
    let main = dir.join("main.scn");
    std::fs::write(
        &main,
        "model = llama_3_1_8b\nhardware h { gpu = h100_sxm }\npool p { role = mixed; instances = [h] }\n\
         workload { arrivals = poisson(1/s); prompt = uniform(10, 20); output = uniform(5, 10) }\nrun { duration = 1s }\ninclude \"f1.scn\"\n",
    )
    .unwrap();
    let o = simctl(&["check", main.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("would nest includes 17 deep; they nest at most 16 deep"), "{e}");
    assert!(!e.contains("cycle") && !e.contains("includes itself"), "{e}");
    // Sixteen deep is fine.
    std::fs::write(dir.join("f1.scn"), "include \"f6.scn\"\n").unwrap();
    std::fs::write(dir.join("f20.scn"), "slo { ttft = 1s }\n").unwrap();
    let o = simctl(&["check", main.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A real cycle.
    std::fs::write(dir.join("f20.scn"), "include \"f1.scn\"\n").unwrap();
    let o = simctl(&["check", main.to_str().unwrap()]);
    assert!(stderr(&o).contains("includes itself") && stderr(&o).contains("include cycle"), "{}", stderr(&o));
}

/// The README's exit-status line, as `(code, what)` pairs.
fn documented_exit_codes() -> Vec<(i32, String)> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme.find("- Exit status:").expect("the README documents exit codes");
    let para: String = readme[start..].lines().take_while(|l| !l.trim().is_empty() && !l.starts_with("###")).collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    let words: Vec<&str> = para.split_whitespace().collect();
    for (k, w) in words.iter().enumerate() {
        if let Ok(code) = w.trim_end_matches(',').parse::<i32>()
            && matches!(words.get(k + 1), Some(&"for") | Some(&"on"))
        {
            out.push((code, words[k + 2..].iter().take(6).copied().collect::<Vec<_>>().join(" ")));
        }
    }
    out
}

#[test]
fn the_readme_exit_codes_are_the_binarys() {
    let codes = documented_exit_codes();
    let code_of = |what: &str| codes.iter().find(|(_, w)| w.starts_with(what)).unwrap_or_else(|| panic!("`{what}` in {codes:?}")).0;
    let dir = temp_dir("hostile-exit-codes");
    assert_eq!(code_of("success"), 0);
    // 0: success.
    let ok = dir.join("ok");
    assert_eq!(simctl(&["run", "--set", "run.duration=2s", "--out", ok.to_str().unwrap()]).status.code(), Some(0));
    // 2: bad input: a scenario, an override, a trace line.
    let bad_input = code_of("bad input");
    assert_eq!(simctl(&["run", "--set", "no_such_knob=3"]).status.code(), Some(bad_input));
    std::fs::write(dir.join("t.csv"), "arrival_s,prompt_tokens,output_tokens\n0,10,2\nzz,10,2\n").unwrap();
    let scn = trace_scenario(&dir, "t.csv");
    assert_eq!(run_in(&dir, &["run", scn.to_str().unwrap()]).status.code(), Some(bad_input), "a bad trace line");
    // 3: a compare --fail-if failure.
    let slow = dir.join("slow");
    assert_eq!(
        simctl(&["run", "--set", "run.duration=2s", "--set", "arrival_rate=200/s", "--out", slow.to_str().unwrap()]).status.code(),
        Some(0)
    );
    let gate = simctl(&["compare", ok.to_str().unwrap(), slow.to_str().unwrap(), "--fail-if", "ttft_ms.p95>+10%"]);
    assert_eq!(gate.status.code(), Some(code_of("a `compare --fail-if`")), "{}", stderr(&gate));
    // 1: other failures: an incomplete run.
    let o = simctl(&["run", "--set", "run.max_in_flight=5", "--set", "arrival_rate=500/s"]);
    assert_eq!(o.status.code(), Some(code_of("other failures")), "{}", stderr(&o));
    assert_eq!(codes.iter().map(|c| c.0).collect::<Vec<_>>(), [0, 2, 3, 1, 130], "{codes:?}");
    // 130 (an interrupted calibrate) is checked against the binary in
    // `calibrate_stops_on_sigterm_and_keeps_the_probes_it_measured`.
}

/// A run folder written by `simctl run`.
fn record(dir: &Path) -> PathBuf {
    let out = dir.join("run");
    let o = simctl(&["run", "--set", "run.duration=3s", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

#[test]
fn report_and_replay_check_every_file_of_a_record() {
    let dir = temp_dir("hostile-records");
    let good = record(&dir);
    assert!(simctl(&["report", good.to_str().unwrap()]).status.success());
    let csv = std::fs::read_to_string(good.join("requests.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    let ttft = rows[0].split(',').position(|c| c == "ttft_ms").unwrap();
    let with_nan = {
        let mut r: Vec<String> = rows.iter().map(|s| s.to_string()).collect();
        let mut f: Vec<String> = r[3].split(',').map(str::to_string).collect();
        f[ttft] = "NaN".into();
        r[3] = f.join(",");
        r.join("\n") + "\n"
    };
    let cases: [(&str, Option<String>, &str); 4] = [
        ("deleted", None, "requests.csv`: cannot read"),
        ("truncated", Some(csv[..csv.len() - 40].to_string()), "the last line is cut short"),
        ("short", Some(rows[..rows.len() - 5].join("\n") + "\n"), "requests, but summary.json says"),
        ("nan", Some(with_nan), "requests.csv:4: `ttft_ms` is NaN where other rows have values"),
    ];
    for (name, text, needle) in cases {
        let bad = dir.join(name);
        std::fs::create_dir_all(&bad).unwrap();
        for f in std::fs::read_dir(&good).unwrap().flatten().filter(|f| f.path().is_file()) {
            std::fs::copy(f.path(), bad.join(f.file_name())).unwrap();
        }
        match text {
            Some(t) => std::fs::write(bad.join("requests.csv"), t).unwrap(),
            None => std::fs::remove_file(bad.join("requests.csv")).unwrap(),
        }
        let o = simctl(&["report", bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{name}: {}", stderr(&o));
    }

    // A validation record whose live requests.csv was cut short is refused, not "replayed ok".
    let rec = dir.join("validation");
    copy_tree(&repo_root().join("validation/records/poisson_uniform-tiny"), &rec);
    let m = json(&rec.join("validation.json"));
    let live = rec.join(m["loads"][0]["live"].as_str().unwrap()).join("requests.csv");
    let text = std::fs::read_to_string(&live).unwrap();
    std::fs::write(&live, &text[..text.len() / 2]).unwrap();
    // The scenario path recorded is where it was; the copy beside the record is used when
    // that is gone, so the replay cannot read around the damage.
    let o = crate::simctl_guarded(&["validate", "--replay", rec.to_str().unwrap()], HANG_GUARD);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("requests.csv"), "{}", stderr(&o));
    assert!(!stdout(&o).contains("replayed"), "{}", stdout(&o));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { copy_tree(&p, &to.join(e.file_name())) } else { std::fs::copy(&p, to.join(e.file_name())).map(|_| ()).unwrap() }
    }
}

#[test]
fn live_names_an_endpoint_that_accepts_connections_but_never_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Accept and hold every connection, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c);
        }
    });
    let dir = temp_dir("hostile-silent");
    let out = dir.join("out");
    let o = crate::simctl_guarded(&["live", "--endpoint", &url, "--probe-timeout", "1", "--out", out.to_str().unwrap()], HANG_GUARD);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("{url}/v1/models did not answer within 1s")), "{}", stderr(&o));
    let left: Vec<_> = std::fs::read_dir(&out).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "a failed start leaves nothing in --out: {left:?}");
}

/// Starts simctl with SIGINT ignored, as a non-interactive shell starts a background job
/// (`simctl sweep ... &` in a script): the handler must still be installed.
fn spawn_in_background(args: &[&str], dir: &Path) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_simctl"));
    cmd.args(args).current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    cmd.spawn().expect("simctl starts")
}

fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < HANG_GUARD, "{what} never happened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

fn no_partials(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        assert!(!e.file_name().to_string_lossy().ends_with(".partial"), "{} left behind", e.path().display());
    }
}

#[test]
fn a_sweep_started_in_the_background_stops_on_sigint_and_keeps_what_finished() {
    let dir = temp_dir("hostile-sweep-sigint");
    let out = dir.join("sweep");
    // Runs of days of simulated time: minutes each, so the signal lands mid-sweep.
    let args = [
        "sweep",
        "--grid",
        "arrival_rate=10/s,11/s,12/s,13/s",
        "--set",
        "run.duration=2000000s",
        "--jobs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    let child = spawn_in_background(&args, &repo_root());
    wait_for("the sweep's results.csv", || out.join("results.csv").is_file());
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGINT);
    let o = crate::wait_guarded(child, &args, HANG_GUARD);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted (Ctrl-C): 0 of 4 runs finished"), "{}", stderr(&o));
    let m = json(&out.join("manifest.json"));
    assert!(m["incomplete_reason"].as_str().unwrap().starts_with("interrupted"), "{m}");
    assert!(out.join("points.csv").is_file() && out.join("results.csv").is_file());
    // The folder loads: report lists the runs that are missing.
    let r = simctl(&["report", out.to_str().unwrap(), "--json"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let v: serde_json::Value = serde_json::from_str(&stdout(&r)).unwrap();
    assert_eq!((v["complete"].as_bool(), v["missing_runs"].as_array().map(Vec::len)), (Some(false), Some(4)));
}

#[test]
fn run_stops_on_sigterm_and_writes_everything_marked_incomplete() {
    let dir = temp_dir("hostile-run-sigterm");
    let out = dir.join("run");
    let args = ["run", "--set", "run.duration=1000000s", "--out", out.to_str().unwrap()];
    let child = spawn_in_background(&args, &repo_root());
    let partial = out.join("requests.csv.partial");
    wait_for("rows in requests.csv.partial", || std::fs::metadata(&partial).map_or(0, |m| m.len()) > 10_000);
    signal(&child, libc::SIGTERM);
    let o = crate::wait_guarded(child, &args, HANG_GUARD);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = json(&out.join("summary.json"));
    assert_eq!(s["complete"], false);
    assert!(s["incomplete_reason"].as_str().unwrap().starts_with("interrupted (SIGTERM)"), "{s}");
    no_partials(&out);
    // What was written checks as a record.
    assert!(simctl(&["report", out.to_str().unwrap()]).status.success());
}

#[test]
fn a_second_signal_quits_at_once_and_leaves_no_partial_files() {
    let dir = temp_dir("hostile-run-twice");
    let out = dir.join("run");
    let args = ["run", "--set", "run.duration=1000000s", "--out", out.to_str().unwrap()];
    let mut child = Command::new(env!("CARGO_BIN_EXE_simctl")).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let partial = out.join("requests.csv.partial");
    wait_for("rows in requests.csv.partial", || std::fs::metadata(&partial).map_or(0, |m| m.len()) > 10_000);
    signal(&child, libc::SIGINT);
    signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    assert!(!status.success());
    if std::fs::read_dir(&out).unwrap().flatten().any(|e| e.file_name() == "summary.json") {
        // The first signal's record was complete before the second came.
        return;
    }
    no_partials(&out);
}

#[test]
fn eval_stops_on_ctrl_c_and_writes_what_finished() {
    use simctl_live::fake::{FakeEngine, FakeSpec, Step};
    use std::sync::Arc;
    // Slow decode steps: the timed requests take seconds each.
    let engine = FakeEngine::start(FakeSpec {
        step_cost: Arc::new(|s| match s {
            Step::Prefill { .. } => Duration::from_millis(1),
            Step::Decode { .. } => Duration::from_millis(20),
        }),
        ..FakeSpec::default()
    })
    .unwrap();
    let dir = temp_dir("hostile-eval-sigint");
    let out = dir.join("eval");
    let url = engine.url();
    let args = ["eval", "--endpoint", &url, "--repeats", "3", "--seed", "7", "--allow-missing-metrics", "--out", out.to_str().unwrap()];
    let child = spawn_in_background(&args, &repo_root());
    // Past the quality questions, into the timed requests.
    wait_for("timed requests", || engine.requests().iter().any(|r| r["ignore_eos"] == true));
    signal(&child, libc::SIGINT);
    let o = crate::wait_guarded(child, &args, HANG_GUARD);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted (Ctrl-C): wrote what finished"), "{}", stderr(&o));
    let meta = json(&out.join("sys_meta.json"));
    assert!(meta["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().starts_with("interrupted")), "{meta}");
    assert!(out.join("latency.jsonl").is_file() && out.join("quality.jsonl").is_file());
}

#[test]
fn calibrate_stops_on_sigterm_and_keeps_the_probes_it_measured() {
    // Calibrate against an endpoint that is up but slow: SIGTERM mid-probe keeps the probes
    // measured so far (not a profile) and exits 130.
    use simctl_live::fake::FakeEngine;
    let e = FakeEngine::start(crate::batched(crate::MAX_SEQS, crate::BUDGET, 4096)).unwrap();
    let dir = temp_dir("hostile-calibrate-sigterm");
    let out = dir.join("p.yaml");
    let url = e.url();
    let args = ["calibrate", "--model", "fake-model", "--endpoint", &url, "--out", out.to_str().unwrap()];
    let child = spawn_in_background(&args, &repo_root());
    wait_for("probe requests", || e.requests().len() > 40);
    signal(&child, libc::SIGTERM);
    let o = crate::wait_guarded(child, &args, HANG_GUARD);
    let documented = documented_exit_codes().into_iter().find(|(_, w)| w.starts_with("an interrupted `simctl calibrate`")).unwrap().0;
    assert_eq!(o.status.code(), Some(documented), "{}", stderr(&o));
    assert!(!out.exists(), "no profile from an interrupted calibration");
    let kept = dir.join("p.interrupted.yaml");
    if stderr(&o).contains("probes measured are in") {
        let text = std::fs::read_to_string(&kept).unwrap();
        assert!(text.contains("not a profile") && text.contains("samples:"), "{text}");
    } else {
        assert!(stderr(&o).contains("no probe had finished, nothing written"), "{}", stderr(&o));
    }
    let _ = std::io::stderr().flush();
}

#[test]
fn validate_stops_on_ctrl_c_and_records_the_loads_that_finished() {
    use simctl_live::fake::FakeEngine;
    let (a, b) = (FakeEngine::start(Default::default()).unwrap(), FakeEngine::start(Default::default()).unwrap());
    let dir = temp_dir("hostile-validate-sigint");
    std::fs::write(dir.join("p.yaml"), crate::calibrate::PROFILE).unwrap();
    let out = dir.join("v");
    let (p, o, ua, ub) = (dir.join("p.yaml").display().to_string(), out.display().to_string(), a.url(), b.url());
    // A thousand requests at 0.6 req/s: the first load runs for half an hour.
    let args = [
        "validate",
        "--profile",
        &p,
        "--endpoint",
        &ua,
        "--endpoint",
        &ub,
        "--set",
        "requests=1000",
        "--capacity",
        "2/s",
        "--loads",
        "30%,60%",
        "--out",
        &o,
    ];
    let child = spawn_in_background(&args, &repo_root());
    wait_for("the first load's requests", || a.requests().len() + b.requests().len() >= 2);
    signal(&child, libc::SIGINT);
    let o = crate::wait_guarded(child, &args, HANG_GUARD);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted (Ctrl-C): validation.json holds the 0 loads that finished"), "{}", stderr(&o));
    let m = json(&out.join("validation.json"));
    assert_eq!(m["loads"].as_array().map(Vec::len), Some(0), "{m}");
}

#[test]
fn live_started_in_the_background_stops_on_sigterm_and_writes_everything() {
    use simctl_live::fake::FakeEngine;
    let e = FakeEngine::start(Default::default()).unwrap();
    let dir = temp_dir("hostile-live-sigterm");
    let out = dir.join("live");
    let url = e.url();
    let args = ["live", "--endpoint", &url, "--set", "requests=100000", "--set", "arrival_rate=20/s", "--out", out.to_str().unwrap()];
    let child = spawn_in_background(&args, &repo_root());
    wait_for("requests at the engine", || e.requests().len() >= 10);
    signal(&child, libc::SIGTERM);
    let o = crate::wait_guarded(child, &args, HANG_GUARD);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = json(&out.join("summary.json"));
    assert_eq!((s["complete"].as_bool(), s["live"]["interrupted"].as_bool()), (Some(false), Some(true)), "{s}");
    assert!(s["incomplete_reason"].as_str().unwrap().starts_with("interrupted (SIGTERM) after"), "{s}");
    no_partials(&out);
    assert_eq!(s["requests"].as_u64().unwrap() as usize, e.requests().len(), "every request sent is recorded");
}

#[test]
fn an_interrupted_capacity_search_keeps_its_brackets_marked_incomplete() {
    let dir = temp_dir("hostile-find-max-sigint");
    let out = dir.join("fm");
    let args = ["sweep", "--find-max", "arrival_rate", "--set", "run.duration=2000000s", "--out", out.to_str().unwrap()];
    let child = spawn_in_background(&args, &repo_root());
    wait_for("the search to start", || {
        std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
            .is_ok_and(|s| s.split_whitespace().nth(13).and_then(|t| t.parse::<u64>().ok()) > Some(50))
    });
    signal(&child, libc::SIGINT);
    let o = crate::wait_guarded(child, &args, HANG_GUARD);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&out.join("find_max.json"));
    assert_eq!(v["complete"], false, "{v}");
    assert!(v["results"][0]["note"].as_str().unwrap().starts_with("interrupted (Ctrl-C)"), "{v}");
}
