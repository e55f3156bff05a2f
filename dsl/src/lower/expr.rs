//! Expressions and parameters: evaluation of the syntax tree into values with units.

use crate::ast::{BinOp, Block, Expr, ExprKind, Item};
use crate::value::{Dim, Val, ValKind, unit};

use super::{Cx, VItem};

impl Cx {
    pub(crate) fn eval(&mut self, e: &Expr, src: usize) -> Option<Val> {
        let mk = |kind| Some(Val { kind, span: e.span, src });
        match &e.kind {
            ExprKind::Number { value, unit: None } => mk(ValKind::Num(*value, Dim::NONE)),
            ExprKind::Number { value, unit: Some(u) } => {
                let (f, d) = unit(u).expect("the parser only accepts known units");
                mk(ValKind::Num(value * f, d))
            }
            ExprKind::Str(s) => mk(ValKind::Str(s.clone())),
            ExprKind::Bool(b) => mk(ValKind::Bool(*b)),
            ExprKind::Ident(name) => match self.params.get(name) {
                // A string from the command line keeps its origin, so a path in it resolves
                // against the working directory, not the scenario's folder.
                Some(v) if v.src != 0 && matches!(v.kind, ValKind::Str(_)) => Some(v.clone()),
                Some(v) => Some(Val { span: e.span, src, ..v.clone() }),
                None => mk(ValKind::Ident(name.clone())),
            },
            ExprKind::List(items) => {
                let vals: Vec<Val> = items.iter().filter_map(|i| self.eval(i, src)).collect();
                mk(ValKind::List(vals))
            }
            ExprKind::Call { name, args } => {
                let mut out = Vec::new();
                for a in args {
                    out.push((a.name.as_ref().map(|n| n.name.clone()), self.eval(&a.value, src)?));
                }
                mk(ValKind::Call { name: name.name.clone(), args: out })
            }
            ExprKind::Replicate { count, of } => mk(ValKind::Replicate(*count, of.name.clone())),
            ExprKind::Neg(inner) => {
                let v = self.eval(inner, src)?;
                match v.kind {
                    ValKind::Num(x, d) => mk(ValKind::Num(-x, d)),
                    _ => {
                        self.error(src, e.span, format!("cannot negate {v}"), "not a number", None);
                        None
                    }
                }
            }
            ExprKind::Binary(op, a, b) => {
                let (va, vb) = (self.eval(a, src)?, self.eval(b, src)?);
                let (ValKind::Num(x, dx), ValKind::Num(y, dy)) = (&va.kind, &vb.kind) else {
                    let bad = if matches!(va.kind, ValKind::Num(..)) { &vb } else { &va };
                    self.error(src, bad.span, format!("arithmetic needs numbers, found {bad}"), "not a number", None);
                    return None;
                };
                let (x, y, dx, dy) = (*x, *y, *dx, *dy);
                let r = match op {
                    BinOp::Add | BinOp::Sub => {
                        if dx != dy {
                            self.error(
                                src,
                                e.span,
                                format!("cannot combine {} with {}", dx.describe(), dy.describe()),
                                "units differ",
                                Some("both sides of `+` and `-` need the same unit".into()),
                            );
                            return None;
                        }
                        (if *op == BinOp::Add { x + y } else { x - y }, dx)
                    }
                    BinOp::Mul => (x * y, dx * dy),
                    BinOp::Div => {
                        if y == 0.0 {
                            self.error(src, vb.span, "division by zero".into(), "this is zero", None);
                            return None;
                        }
                        (x / y, dx / dy)
                    }
                };
                mk(ValKind::Num(r.0, r.1))
            }
        }
    }

    pub(crate) fn eval_items(&mut self, items: &[Item], src: usize) -> Vec<VItem> {
        let mut out = Vec::new();
        for it in items {
            match it {
                Item::Param { .. } => {}
                Item::Setting { key, value } => {
                    if let Some(v) = self.eval(value, src) {
                        out.push(VItem::Setting { key: key.clone(), value: v });
                    }
                }
                Item::Block(Block { kind, name, items, span }) => {
                    let inner = self.eval_items(items, src);
                    out.push(VItem::Block { kind: kind.clone(), name: name.clone(), items: inner, span: *span });
                }
                Item::Include { span, .. } => {
                    self.error(0, *span, "`include` belongs at the top level of a file".into(), "not here", None);
                }
            }
        }
        out
    }
}
