//! Golden tests of rendered diagnostics: every mistake is reported at the right span, with
//! a message, a label and (where one helps) a hint. Rendered output is compared with
//! `tests/golden/NAME.txt`; run with `SIMCTL_BLESS=1` to rewrite them after a deliberate change.

use simctl_dsl::load;

const BASE: &str = "model = llama_3_1_8b\nhardware gpu { prefill_rate = 1000 tok/s; decode_rate = 100 tok/s; cost = 1 $/h; kv_capacity = 10000 tok }\npool p { role = mixed; instances = [gpu] }\nrun { duration = 1s }\n";
const WORKLOAD: &str = "workload { arrivals = poisson(1/s); prompt = 10; output = 10 }\n";

/// (name, source, override, expected "line:col", span length, text the message contains)
type Case = (&'static str, &'static str, Option<(&'static str, &'static str)>, &'static str, usize, &'static str);

const CASES: &[Case] = &[
    ("unknown_key", "engine { max_batch_token = 10 }\n", None, "6:10", 15, "unknown key `max_batch_token` in engine"),
    ("missing_unit", "slo { ttft = 350 }\n", None, "6:14", 3, "`ttft` expects a duration such as `350ms`, found `350` without a unit"),
    ("wrong_dimension", "slo { ttft = 350 tok/s }\n", None, "6:14", 9, "`ttft` expects a duration such as `350ms`, found a token rate"),
    ("unknown_block", "routr { policy = random }\n", None, "6:1", 5, "unknown block `routr`"),
    ("unknown_policy", "router { policy = telemtry }\n", None, "6:19", 8, "unknown policy `telemtry`"),
    (
        "param_of_other_policy",
        "router { policy = round_robin; queue_urgency = 2 }\n",
        None,
        "6:48",
        1,
        "`queue_urgency` is a parameter of the `telemetry` policy",
    ),
    ("unknown_model", "", Some(("model", "llama9")), "1:1", 6, "unknown model `llama9`"),
    ("unknown_gpu", "hardware x { gpu = v100 }\n", None, "6:20", 4, "unknown gpu `v100`"),
    ("unknown_hardware", "pool q { role = mixed; instances = [gpx] }\n", None, "6:37", 3, "unknown hardware `gpx`"),
    ("unknown_pool_in_link", "link { from = p; to = dec }\n", None, "6:23", 3, "unknown pool `dec`"),
    ("missing_value", "seed =\n", None, "6:7", 1, "syntax error: expected a value on the same line as `=`"),
    ("unclosed_block", "slo { ttft = 1s\n", None, "7:1", 0, "syntax error: expected `}` to close the block"),
    ("stray_brace", "}\n", None, "6:1", 1, "syntax error: expected a setting or a block (this `}` closes nothing)"),
    ("unclosed_string", "name = \"abc\n", None, "6:12", 1, "syntax error: expected a closing `\"` on the same line"),
    ("unclosed_list", "pool q { role = mixed; instances = [gpu gpu] }\n", None, "6:41", 1, "syntax error: expected `,` or `]`"),
    ("bad_operator_operand", "seed = 1 + \n", None, "7:1", 0, "syntax error: expected a value after `+`"),
    ("add_mixed_units", "param x = 1s + 2 tok\n", None, "6:11", 10, "cannot combine a duration such as `350ms` with a token count"),
    ("division_by_zero", "param x = 1 / 0\n", None, "6:15", 1, "division by zero"),
    (
        "unknown_distribution",
        "workload { arrivals = poison(1/s); prompt = 1; output = 1 }\n",
        None,
        "5:23",
        11,
        "`arrivals` does not take `poison(...)`",
    ),
    (
        "wrong_arg_count",
        "workload { arrivals = poisson(1/s); prompt = uniform(5); output = 1 }\n",
        None,
        "5:46",
        10,
        "`uniform` takes 2 positional arguments, found 1",
    ),
    (
        "unknown_named_arg",
        "workload { arrivals = poisson(1/s, burst = 2); prompt = 1; output = 1 }\n",
        None,
        "5:44",
        1,
        "`poisson` has no argument `burst`",
    ),
    ("bad_role", "pool q { role = both; instances = [gpu] }\n", None, "6:17", 4, "unknown role `both`"),
    ("duplicate_key", "slo { ttft = 1s; ttft = 2s }\n", None, "6:18", 4, "`ttft` is set twice in slo"),
    ("not_a_whole_number", "engine { max_seqs = 2.5 }\n", None, "6:21", 3, "`max_seqs` must be a whole number, found `2.5`"),
    (
        "fraction_out_of_range",
        "engine { gpu_memory_utilization = 150% }\n",
        None,
        "6:35",
        4,
        "`gpu_memory_utilization` must be between 0 and 1",
    ),
    ("duplicate_instance", "pool q { role = mixed; instances = [gpu] }\n", None, "6:1", 42, "instance name `gpu` is used twice"),
    ("duplicate_block", "slo { ttft = 1s }\nslo { tpot = 1s }\n", None, "7:1", 3, "`slo` is declared twice"),
    ("set_unknown_param", "", Some(("arival_rate", "3/s")), "1:1", 3, "`--set arival_rate` matches no parameter and no setting"),
    ("set_bad_value", "", Some(("seed", "1 +")), "1:4", 0, "syntax error: expected a value after `+`"),
    ("trace_missing", "workload { arrivals = trace(\"no/such.jsonl\") }\n", None, "5:29", 15, "cannot open trace"),
];

#[test]
fn every_mistake_is_located_and_rendered_as_recorded() {
    let bless = std::env::var_os("SIMCTL_BLESS").is_some();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut failures = Vec::new();
    for &(name, extra, set, at, len, message) in CASES {
        // Cases that bring their own workload replace the default one.
        let src = if extra.contains("workload") { format!("{BASE}{extra}") } else { format!("{BASE}{WORKLOAD}{extra}") };
        let overrides: Vec<(String, String)> = set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let diags = match load("case.scn", &src, &overrides) {
            Ok(_) => {
                failures.push(format!("{name}: no error"));
                continue;
            }
            Err(d) => d,
        };
        let d = diags.items.iter().find(|d| d.message.contains(message));
        let Some(d) = d else {
            failures.push(format!(
                "{name}: no diagnostic contains {message:?}; got {:?}",
                diags.items.iter().map(|d| &d.message).collect::<Vec<_>>()
            ));
            continue;
        };
        let (line, col) = diags.line_col(d);
        if format!("{line}:{col}") != at || d.span.end - d.span.start != len {
            failures.push(format!("{name}: at {line}:{col} len {} (expected {at} len {len}): {}", d.span.end - d.span.start, d.message));
        }
        let rendered = diags.render(false);
        let path = dir.join(format!("{name}.txt"));
        if bless {
            std::fs::write(&path, &rendered).unwrap();
        } else {
            match std::fs::read_to_string(&path) {
                Ok(golden) if golden == rendered => {}
                Ok(golden) => failures.push(format!("{name}: rendering changed\n--- golden\n{golden}\n--- now\n{rendered}")),
                Err(_) => failures.push(format!("{name}: no golden file (run with SIMCTL_BLESS=1)")),
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
    assert!(CASES.len() >= 25);
}
