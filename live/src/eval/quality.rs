//! The quality slice: short questions with short answers, scored by normalised substring
//! match at temperature 0.

/// Built-in task sets, written for simctl in the spirit of the lab's four: general
/// knowledge, arithmetic word problems, common misconceptions, LLM serving.
const BUILTIN: [(&str, &str); 4] = [
    ("mmlu-mini", include_str!("../../quality/mmlu-mini.jsonl")),
    ("gsm8k-lite", include_str!("../../quality/gsm8k-lite.jsonl")),
    ("truthfulqa-lite", include_str!("../../quality/truthfulqa-lite.jsonl")),
    ("domain-slice", include_str!("../../quality/domain-slice.jsonl")),
];

/// Output tokens an answer may take: answers are a few words.
pub const ANSWER_MAX_TOKENS: u32 = 24;

/// One question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QualityItem {
    /// Task set it belongs to.
    pub task: String,
    /// The question.
    pub question: String,
    /// The answer, as the quality rows record it.
    pub expected: String,
    /// Other answers that count as correct (`six` for `6`).
    pub accept: Vec<String>,
}

/// A quality file line that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{source_name} line {line}: {message}")]
pub struct QualityFileError {
    /// File name (or built-in set name).
    pub source_name: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    task: Option<String>,
    question: String,
    expected: String,
    #[serde(default)]
    accept: Vec<String>,
}

/// Parses JSONL lines `{"task"?, "question", "expected", "accept"?}`; lines without a
/// task belong to `default_task`. Blank lines are skipped.
pub fn parse_items(text: &str, source_name: &str, default_task: &str) -> Result<Vec<QualityItem>, QualityFileError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let err = |message: String| QualityFileError { source_name: source_name.to_string(), line: i + 1, message };
        let l: Line = serde_json::from_str(raw).map_err(|e| {
            err(format!("{e}; each line is a JSON object {{\"question\": \"...\", \"expected\": \"...\"}}, optionally with \"task\" and \"accept\": [...]"))
        })?;
        if normalise(&l.expected).is_empty() {
            return Err(err("`expected` has no letters or digits, so no answer could match it".into()));
        }
        out.push(QualityItem {
            task: l.task.unwrap_or_else(|| default_task.to_string()),
            question: l.question,
            expected: l.expected,
            accept: l.accept,
        });
    }
    if out.is_empty() {
        return Err(QualityFileError { source_name: source_name.to_string(), line: 0, message: "no questions in it".into() });
    }
    Ok(out)
}

/// The four built-in task sets, 40 questions.
pub fn builtin_items() -> Vec<QualityItem> {
    BUILTIN.iter().flat_map(|(task, text)| parse_items(text, task, task).expect("the built-in quality sets parse")).collect()
}

/// Lowercase, every run of non-alphanumeric characters one space, trimmed:
/// `"Key-Value!"` → `"key value"`.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out.trim().to_string()
}

/// Whether `prediction` contains the expected answer (or an accepted one) after
/// normalising both, as whole words: `no` matches "No, it cannot" but not "I know".
pub fn is_correct(item: &QualityItem, prediction: &str) -> bool {
    let p = format!(" {} ", normalise(prediction));
    std::iter::once(&item.expected).chain(&item.accept).map(|a| normalise(a)).any(|a| !a.is_empty() && p.contains(&format!(" {a} ")))
}

/// The prompt for a question: an instruction and one worked example, so that models stop
/// after a short answer.
pub fn prompt(question: &str) -> String {
    format!("Answer with a few words only.\nQuestion: What is the capital of France?\nAnswer: Paris\nQuestion: {question}\nAnswer:")
}

/// The answer in a completion: its first non-blank line, trimmed.
pub fn prediction(completion: &str) -> String {
    completion.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_sets_have_ten_questions_each() {
        let items = builtin_items();
        assert_eq!(items.len(), 40);
        for (task, _) in BUILTIN {
            assert_eq!(items.iter().filter(|i| i.task == task).count(), 10, "{task}");
        }
    }

    #[test]
    fn matching_is_normalised_and_whole_word() {
        let item = |e: &str, a: &[&str]| QualityItem {
            task: "t".into(),
            question: "q".into(),
            expected: e.into(),
            accept: a.iter().map(|s| s.to_string()).collect(),
        };
        assert!(is_correct(&item("no", &[]), "No, it cannot."));
        assert!(!is_correct(&item("no", &[]), "I know it"));
        assert!(is_correct(&item("key value", &[]), "Key-Value"));
        assert!(is_correct(&item("time to first token", &[]), "TTFT means Time To First Token."));
        assert!(is_correct(&item("6", &["six"]), "Six sides"));
        assert!(!is_correct(&item("6", &["six"]), "16"));
        assert!(!is_correct(&item("paris", &[]), ""));
        assert_eq!(normalise("  Héllo,\tWORLD!! "), "héllo world");
        assert_eq!(prediction("\n  Paris\nQuestion: more"), "Paris");
    }

    #[test]
    fn bad_lines_say_where_and_what() {
        let e = parse_items("{\"question\": \"q\", \"expected\": \"a\"}\n{\"question\": \"q\"}\n", "mine.jsonl", "mine").unwrap_err();
        assert_eq!((e.line, e.source_name.as_str()), (2, "mine.jsonl"));
        assert!(e.to_string().contains("missing field `expected`"), "{e}");
        let e = parse_items("{\"question\": \"q\", \"expected\": \"?!\"}", "f", "f").unwrap_err();
        assert!(e.message.contains("no letters or digits"), "{e}");
        assert!(parse_items("\n\n", "f", "f").unwrap_err().message.contains("no questions"));
        let ok = parse_items(
            "{\"task\": \"x\", \"question\": \"q\", \"expected\": \"a\"}\n{\"question\": \"r\", \"expected\": \"b\"}",
            "f",
            "dflt",
        )
        .unwrap();
        assert_eq!((ok[0].task.as_str(), ok[1].task.as_str()), ("x", "dflt"));
    }
}
