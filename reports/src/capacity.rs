//! The capacity search of `simctl sweep --find-max`: the largest value of a parameter (an
//! arrival rate, most often) at which a scenario still meets its SLO attainment target.
//!
//! The search brackets the edge, then bisects: within a given range it tries LO, then HI;
//! from the scenario's own value (a factor of 1) it doubles while the target is met, or halves
//! until it is (16 times at most each way). Between the highest value that met the target and
//! the lowest that missed it, it bisects until the two are within `tolerance` of the lower
//! (60 halvings at most). Attainment is assumed to fall as the value grows; where it does not,
//! the result is still a value that met the target with a larger one that missed it.
//!
//! ```
//! use simctl_reports::capacity::{Range, search};
//! // Attainment falls past 37.5: the search finds it to 1%.
//! let eval = |x: f64| Ok::<_, ()>((if x <= 37.5 { 1.0 } else { 0.5 }, x));
//! let s = search(Range::Between { lo: 5.0, hi: 80.0 }, 0.9, 0.01, eval);
//! let (pass, fail) = (s.pass.unwrap().x, s.fail.unwrap());
//! assert!(pass <= 37.5 && fail > 37.5 && fail - pass <= 0.01 * pass);
//! ```

/// Where the search looks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Range {
    /// Between two values.
    Between {
        /// The lowest value tried.
        lo: f64,
        /// The highest.
        hi: f64,
    },
    /// Factors of the scenario's value, from 1 (doubling or halving to bracket the edge).
    FromOne,
}

impl Range {
    /// The first value the search evaluates.
    pub fn start(&self) -> f64 {
        match self {
            Range::Between { lo, .. } => *lo,
            Range::FromOne => 1.0,
        }
    }
}

/// A value the search evaluated and its figures (means over the seeds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// The value (in the range's terms: a factor for [`Range::FromOne`]).
    pub x: f64,
    /// SLO attainment there.
    pub attainment: f64,
    /// Goodput there, requests/s.
    pub goodput: f64,
}

/// What a search found.
#[derive(Debug)]
pub struct Search<E> {
    /// The highest value that met the target, if any did.
    pub pass: Option<Point>,
    /// The lowest value above it that missed the target, if any did.
    pub fail: Option<f64>,
    /// Values evaluated.
    pub evals: usize,
    /// What the user should know: the edge lies outside the range, or was not reached.
    pub note: String,
    /// The error that stopped the search early (an interruption, a failed evaluation); the
    /// bracket found until then is kept.
    pub stopped_by: Option<E>,
}

/// Searches for the largest value whose attainment (the first figure of `eval`) is at least
/// `target`, to a relative `tolerance`; `eval` gives `(attainment, goodput)` at a value.
pub fn search<E>(range: Range, target: f64, tolerance: f64, mut eval: impl FnMut(f64) -> Result<(f64, f64), E>) -> Search<E> {
    let mut s = Search { pass: None, fail: None, evals: 0, note: String::new(), stopped_by: None };
    if let Err(e) = bracket_and_bisect(range, target, tolerance, &mut eval, &mut s) {
        s.stopped_by = Some(e);
    }
    s
}

fn bracket_and_bisect<E>(
    range: Range,
    target: f64,
    tolerance: f64,
    eval: &mut impl FnMut(f64) -> Result<(f64, f64), E>,
    s: &mut Search<E>,
) -> Result<(), E> {
    // Evaluates `x`: `Some(point)` when it meets the target.
    let mut at = |x: f64, s: &mut Search<E>| -> Result<Option<Point>, E> {
        let (attainment, goodput) = eval(x)?;
        s.evals += 1;
        Ok((attainment >= target).then_some(Point { x, attainment, goodput }))
    };
    match range {
        Range::Between { lo, hi } => match at(lo, s)? {
            Some(p) => {
                s.pass = Some(p);
                match at(hi, s)? {
                    Some(p) => {
                        s.pass = Some(p);
                        s.note = "meets the target at HI; widen the range".into();
                    }
                    None => s.fail = Some(hi),
                }
            }
            None => {
                s.fail = Some(lo);
                s.note = "misses the target even at LO".into();
            }
        },
        Range::FromOne => match at(1.0, s)? {
            Some(p) => {
                s.pass = Some(p);
                let mut x = 1.0;
                for _ in 0..16 {
                    x *= 2.0;
                    match at(x, s)? {
                        Some(p) => s.pass = Some(p),
                        None => {
                            s.fail = Some(x);
                            break;
                        }
                    }
                }
                if s.fail.is_none() {
                    s.note = "still meets the target at 65536x the scenario's value".into();
                }
            }
            None => {
                s.fail = Some(1.0);
                let mut x = 1.0;
                for _ in 0..16 {
                    x /= 2.0;
                    if let Some(p) = at(x, s)? {
                        s.pass = Some(p);
                        break;
                    }
                    s.fail = Some(x);
                }
                if s.pass.is_none() {
                    s.note = "misses the target even at 1/65536 of the scenario's value".into();
                }
            }
        },
    }
    // Bisection between the highest passing and the lowest failing value.
    if let (Some(_), Some(_)) = (s.pass, s.fail) {
        for _ in 0..60 {
            let (lo, hi) = (s.pass.expect("bracketed").x, s.fail.expect("bracketed"));
            if hi - lo <= tolerance * lo {
                break;
            }
            let mid = 0.5 * (lo + hi);
            match at(mid, s)? {
                Some(p) => s.pass = Some(p),
                None => s.fail = Some(mid),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attainment 1 up to `edge`, 0 past it.
    fn step(edge: f64) -> impl FnMut(f64) -> Result<(f64, f64), ()> {
        move |x| Ok((if x <= edge { 1.0 } else { 0.0 }, 2.0 * x))
    }

    #[test]
    fn bisects_a_range_to_the_tolerance() {
        let s = search(Range::Between { lo: 1.0, hi: 100.0 }, 0.9, 0.001, step(42.0));
        let p = s.pass.unwrap();
        assert!(p.x <= 42.0 && s.fail.unwrap() > 42.0 && s.fail.unwrap() - p.x <= 0.001 * p.x, "{s:?}");
        assert_eq!((p.attainment, p.goodput), (1.0, 2.0 * p.x));
        assert!(s.note.is_empty());
        // Two ends, then one halving per step: ln(99 / 0.042) / ln 2 ≈ 11.2.
        assert!((12..=14).contains(&s.evals), "{}", s.evals);
    }

    #[test]
    fn says_when_the_edge_is_outside_the_range() {
        let s = search(Range::Between { lo: 1.0, hi: 10.0 }, 0.9, 0.01, step(42.0));
        assert_eq!((s.pass.unwrap().x, s.fail, s.evals), (10.0, None, 2));
        assert!(s.note.contains("widen"));
        let s = search(Range::Between { lo: 50.0, hi: 100.0 }, 0.9, 0.01, step(42.0));
        assert_eq!((s.pass, s.fail, s.evals), (None, Some(50.0), 1));
        assert!(s.note.contains("even at LO"));
    }

    #[test]
    fn doubles_or_halves_from_the_scenarios_value() {
        let s = search(Range::FromOne, 0.9, 0.01, step(5.3));
        assert!(s.pass.unwrap().x <= 5.3 && s.fail.unwrap() > 5.3, "{s:?}");
        let s = search(Range::FromOne, 0.9, 0.01, step(0.3));
        assert!(s.pass.unwrap().x <= 0.3 && s.fail.unwrap() > 0.3, "{s:?}");
        let s = search(Range::FromOne, 0.9, 0.01, step(1e9));
        assert_eq!((s.pass.unwrap().x, s.fail), (65536.0, None));
        assert!(s.note.contains("65536x"));
        let s = search(Range::FromOne, 0.9, 0.01, step(1e-9));
        assert_eq!((s.pass, s.fail), (None, Some(1.0 / 65536.0)));
    }

    #[test]
    fn an_error_stops_the_search_and_keeps_the_bracket() {
        let mut n = 0;
        let eval = |x: f64| {
            n += 1;
            if n > 4 { Err("stop") } else { Ok((if x <= 42.0 { 1.0 } else { 0.0 }, 0.0)) }
        };
        let s = search(Range::Between { lo: 1.0, hi: 100.0 }, 0.9, 0.001, eval);
        assert_eq!(s.stopped_by, Some("stop"));
        assert_eq!(s.evals, 4);
        assert!(s.pass.unwrap().x <= 42.0 && s.fail.unwrap() > 42.0);
    }
}
