//! Piecewise-linear curves through measured points, and the rule past their ends.

/// A function known at measured points, linear between them.
///
/// Inside the measured range [`Curve::at`] interpolates linearly, so it is exact at every
/// measured point and monotone between two of them. Outside it, callers choose the rule:
/// [`Curve::clamped`] gives the nearest end's value and says how far past it `x` lies, so
/// that the caller can scale it by a roofline ratio (the rule `docs/zero-shot.md` states).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curve {
    xs: Vec<f64>,
    ys: Vec<f64>,
}

impl Curve {
    /// A curve through `points` (any order; of equal `x`, the last given wins).
    pub fn new(mut points: Vec<(f64, f64)>) -> Curve {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut c = Curve { xs: Vec::with_capacity(points.len()), ys: Vec::with_capacity(points.len()) };
        for (x, y) in points {
            if c.xs.last() == Some(&x) {
                *c.ys.last_mut().expect("same length") = y;
            } else {
                c.xs.push(x);
                c.ys.push(y);
            }
        }
        c
    }

    /// Whether the curve has no points.
    pub fn is_empty(&self) -> bool {
        self.xs.is_empty()
    }

    /// The measured `x` values, ascending.
    pub fn xs(&self) -> &[f64] {
        &self.xs
    }

    /// The first and last measured `x`.
    pub fn range(&self) -> (f64, f64) {
        (self.xs.first().copied().unwrap_or(0.0), self.xs.last().copied().unwrap_or(0.0))
    }

    /// The value at `x` with `x` clamped into the measured range, and the clamped `x`.
    pub fn clamped(&self, x: f64) -> (f64, f64) {
        let (lo, hi) = self.range();
        let x = x.clamp(lo, hi);
        (self.interpolate(x), x)
    }

    /// The value at `x`: linear between measured points; past either end, linear in `x`
    /// through the origin from the end value (`y_end × x / x_end`), the roofline of work
    /// that grows in proportion to `x` scaled by the end point's efficiency.
    pub fn at(&self, x: f64) -> f64 {
        let (y, xc) = self.clamped(x);
        if xc == x || xc <= 0.0 { y } else { y * x / xc }
    }

    fn interpolate(&self, x: f64) -> f64 {
        match self.xs.len() {
            0 => 0.0,
            1 => self.ys[0],
            n => {
                // First index whose x is above; the segment is [i - 1, i].
                let i = self.xs.partition_point(|&v| v <= x).clamp(1, n - 1);
                let (x0, x1, y0, y1) = (self.xs[i - 1], self.xs[i], self.ys[i - 1], self.ys[i]);
                if x1 == x0 { y0 } else { y0 + (y1 - y0) * (x - x0) / (x1 - x0) }
            }
        }
    }

    /// This curve plus `other`, on the union of their points (exact: the sum of two
    /// piecewise-linear functions is linear between the union's points). Past either
    /// curve's range its values follow [`Curve::at`].
    pub fn plus(&self, other: &Curve, scale: f64) -> Curve {
        let mut xs: Vec<f64> = self.xs.iter().chain(&other.xs).copied().collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let pts = xs.into_iter().map(|x| (x, self.at_or_zero(x) + scale * other.at_or_zero(x))).collect();
        Curve::new(pts)
    }

    fn at_or_zero(&self, x: f64) -> f64 {
        if self.is_empty() { 0.0 } else { self.at(x) }
    }

    /// The curve with every value mapped by `f(x, y)`.
    pub fn map(&self, f: impl Fn(f64, f64) -> f64) -> Curve {
        Curve { xs: self.xs.clone(), ys: self.xs.iter().zip(&self.ys).map(|(&x, &y)| f(x, y)).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_at_measured_points_and_monotone_between() {
        let c = Curve::new(vec![(8.0, 30.0), (1.0, 10.0), (4.0, 12.0), (16.0, 70.0)]);
        for (x, y) in [(1.0, 10.0), (4.0, 12.0), (8.0, 30.0), (16.0, 70.0)] {
            assert_eq!(c.at(x), y);
        }
        let mut last = 0.0;
        for i in 0..=150 {
            let x = 1.0 + f64::from(i) * 0.1;
            let y = c.at(x);
            assert!(y >= last, "not monotone at {x}: {y} < {last}");
            last = y;
        }
        assert_eq!(c.at(6.0), 21.0, "halfway between 4 and 8");
    }

    #[test]
    fn past_the_ends_work_scales_from_the_end_point() {
        let c = Curve::new(vec![(2.0, 10.0), (4.0, 14.0)]);
        assert_eq!(c.at(8.0), 28.0, "twice the last x: twice its value");
        assert_eq!(c.at(1.0), 5.0);
        assert_eq!(c.clamped(100.0), (14.0, 4.0));
    }

    #[test]
    fn sums_are_exact_on_the_union_of_points() {
        let a = Curve::new(vec![(1.0, 1.0), (3.0, 5.0)]);
        let b = Curve::new(vec![(2.0, 2.0), (3.0, 3.0)]);
        let s = a.plus(&b, 2.0);
        assert_eq!(s.xs(), &[1.0, 2.0, 3.0]);
        for x in [1.0, 1.5, 2.0, 2.5, 3.0] {
            assert!((s.at(x) - (a.at(x) + 2.0 * b.at(x))).abs() < 1e-12, "{x}");
        }
    }
}
