//! No input makes the parser or lowering panic: seeded random and mutated scenarios.
//! (The coverage-guided fuzz target is `fuzz/fuzz_targets/scenario.rs`; this runs in CI.)

use simctl_dsl::load;

/// Cases per run; raise with SIMCTL_NO_PANIC_CASES for a longer search.
const DEFAULT_CASES: usize = 5_000;

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "=",
    ";",
    ",",
    "\n",
    " ",
    "#",
    "\"",
    "+",
    "-",
    "*",
    "/",
    "..",
    "x",
    "per",
    "param",
    "include",
    "pool",
    "hardware",
    "link",
    "router",
    "workload",
    "slo",
    "run",
    "engine",
    "model",
    "class",
    "sweep",
    "role",
    "mixed",
    "prefill",
    "decode",
    "instances",
    "1",
    "0",
    "1e309",
    "-5",
    "350ms",
    "24/s",
    "10 tok/s",
    "7 $/h",
    "80 GB",
    "90%",
    "3 x gpu",
    "poisson(",
    "trace(\"",
    "uniform(1, 2)",
    "constant(0)",
    "gpu",
    "true",
    "\u{e9}",
    "\u{1F600}",
];

fn scenarios() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "scn"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn random_and_mutated_inputs_never_panic() {
    let cases = std::env::var("SIMCTL_NO_PANIC_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_CASES);
    let seeds = scenarios();
    assert!(!seeds.is_empty());
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    for case in 0..cases {
        let text = if case % 3 == 0 {
            // Token soup.
            (0..rng.below(60)).map(|_| TOKENS[rng.below(TOKENS.len())]).collect::<String>()
        } else {
            // A real scenario with a few random edits at char boundaries.
            let mut s: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(s.len() + 1);
                match rng.below(3) {
                    0 => {
                        let end = (at + rng.below(20)).min(s.len());
                        s.drain(at..end);
                    }
                    1 => {
                        let t: Vec<char> = TOKENS[rng.below(TOKENS.len())].chars().collect();
                        s.splice(at..at, t);
                    }
                    _ => {
                        if at < s.len() {
                            s[at] = char::from_u32(32 + rng.below(95) as u32).unwrap_or(' ');
                        }
                    }
                }
            }
            s.into_iter().collect()
        };
        let set = if case % 7 == 0 { vec![("arrival_rate".to_string(), TOKENS[rng.below(TOKENS.len())].to_string())] } else { vec![] };
        let result = std::panic::catch_unwind(|| {
            if let Err(d) = load("fuzz.scn", &text, &set) {
                let _ = d.render(false);
            }
        });
        assert!(result.is_ok(), "case {case} panicked on input:\n{text}");
    }
}
