//! nom parser: text to [`crate::ast`], recovering at line boundaries so that one run
//! reports every syntax error of a file.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char, digit1};
use nom::combinator::{opt, recognize};
use nom::error::{ErrorKind, ParseError};
use nom::{Err, IResult, Input, Parser};
use nom_locate::LocatedSpan;

use crate::ast::*;

type In<'a> = LocatedSpan<&'a str>;

/// A syntax error: where, and what was expected there.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// What the parser expected, e.g. "a value such as `350ms`".
    pub expected: String,
}

impl<'a> ParseError<In<'a>> for SyntaxError {
    fn from_error_kind(i: In<'a>, _kind: ErrorKind) -> Self {
        SyntaxError { offset: i.location_offset(), expected: String::new() }
    }
    fn append(_: In<'a>, _: ErrorKind, other: Self) -> Self {
        other
    }
    fn or(self, other: Self) -> Self {
        // Keep whichever alternative got furthest: its message is the most specific.
        if other.offset >= self.offset { other } else { self }
    }
}

type PResult<'a, T> = IResult<In<'a>, T, SyntaxError>;

/// Units a number may carry, longest first so that `ms` wins over `m`-anything.
pub const UNITS: &[&str] = &[
    "Gbit/s", "Mbit/s", "GiB/s", "MiB/s", "tok/s", "GB/s", "MB/s", "TB/s", "KB/s", "B/s", "$/h", "/min", "/s", "/h", "GiB", "MiB", "KiB",
    "TiB", "GB", "MB", "KB", "TB", "min", "tok", "ms", "us", "ns", "B", "s", "h", "%",
];

fn offset(i: &In) -> usize {
    i.location_offset()
}

fn fail<T>(i: &In, expected: impl Into<String>) -> PResult<'static, T> {
    Err(Err::Error(SyntaxError { offset: offset(i), expected: expected.into() }))
}

fn cut_with<'a, T>(r: PResult<'a, T>, at: &In<'a>, expected: &str) -> PResult<'a, T> {
    r.map_err(|e| match e {
        Err::Error(mut s) | Err::Failure(mut s) => {
            if s.expected.is_empty() || s.offset == offset(at) {
                s.expected = expected.into();
                s.offset = s.offset.max(offset(at));
            }
            Err::Failure(s)
        }
        Err::Incomplete(n) => Err::Incomplete(n),
    })
}

/// Whitespace, newlines and `#` comments.
fn ws(i: In) -> PResult<()> {
    let mut i = i;
    loop {
        let (r, _) = take_while(|c: char| c.is_whitespace())(i)?;
        i = r;
        if i.fragment().starts_with('#') {
            let (r, _) = take_while(|c: char| c != '\n')(i)?;
            i = r;
        } else {
            return Ok((i, ()));
        }
    }
}

fn inline_ws(i: In) -> PResult<()> {
    let (i, _) = take_while(|c: char| c == ' ' || c == '\t')(i)?;
    Ok((i, ()))
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}
fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn ident(i: In) -> PResult<Ident> {
    let start = offset(&i);
    let (r, s) = recognize((take_while1(is_ident_start), take_while(is_ident_char))).parse(i)?;
    Ok((r, Ident { name: s.fragment().to_string(), span: Span::new(start, offset(&r)) }))
}

fn number_literal(i: In) -> PResult<f64> {
    let (r, s) =
        recognize((digit1, opt((char('.'), digit1)), opt((alt((char('e'), char('E'))), opt(alt((char('+'), char('-')))), digit1))))
            .parse(i)?;
    match s.fragment().parse::<f64>() {
        Ok(v) => Ok((r, v)),
        Err(_) => fail(&i, "a number"),
    }
}

fn unit(i: In) -> PResult<String> {
    for u in UNITS {
        if let Some(rest) = i.fragment().strip_prefix(u)
            && !rest.starts_with(is_ident_char)
        {
            let (r, s) = i.take_split(u.len());
            let _ = rest;
            return Ok((r, s.fragment().to_string()));
        }
    }
    fail(&i, "a unit")
}

fn number(i: In) -> PResult<Expr> {
    let start = offset(&i);
    let (r, value) = number_literal(i)?;
    let (r2, u) = opt((inline_ws, unit).map(|(_, u)| u)).parse(r)?;
    let r = if u.is_some() { r2 } else { r };
    let n = Expr { kind: ExprKind::Number { value, unit: u }, span: Span::new(start, offset(&r)) };
    // `1.2 per 50ms`: a count per duration, i.e. a rate.
    if let Ok((r3, _)) = (inline_ws, tag("per"), take_while1(|c: char| c == ' ' || c == '\t')).parse(r) {
        let (r4, d) = cut_with(number(r3), &r3, "a duration after `per`, such as `per 50ms`")?;
        let span = Span::new(start, d.span.end);
        return Ok((r4, Expr { kind: ExprKind::Binary(BinOp::Div, Box::new(n), Box::new(d)), span }));
    }
    Ok((r, n))
}

fn replicate(i: In) -> PResult<Expr> {
    let start = offset(&i);
    let (r, n) = digit1(i)?;
    let (r, _) = (inline_ws, char('x'), take_while1(|c: char| c == ' ' || c == '\t')).parse(r)?;
    let (r, of) = ident(r)?;
    let count = n
        .fragment()
        .parse::<u32>()
        .map_err(|_| Err::Failure(SyntaxError { offset: start, expected: "a replication count below 4294967296".into() }))?;
    Ok((r, Expr { kind: ExprKind::Replicate { count, of }, span: Span::new(start, offset(&r)) }))
}

fn string(i: In) -> PResult<Expr> {
    let start = offset(&i);
    let (r, _) = char('"')(i)?;
    let (r, body) = take_while(|c: char| c != '"' && c != '\n')(r)?;
    let r = match char::<In, SyntaxError>('"')(r) {
        Ok((r, _)) => r,
        Err(_) => {
            return Err(Err::Failure(SyntaxError { offset: offset(&r), expected: "a closing `\"` on the same line".into() }));
        }
    };
    Ok((r, Expr { kind: ExprKind::Str(body.fragment().to_string()), span: Span::new(start, offset(&r)) }))
}

fn list(i: In) -> PResult<Expr> {
    let start = offset(&i);
    let (mut r, _) = char('[')(i)?;
    let mut items = Vec::new();
    loop {
        let (r2, _) = ws(r)?;
        r = r2;
        if let Ok((r3, _)) = char::<In, SyntaxError>(']')(r) {
            return Ok((r3, Expr { kind: ExprKind::List(items), span: Span::new(start, offset(&r3)) }));
        }
        let (r2, e) = cut_with(expr(r), &r, "a list element or `]`")?;
        items.push(e);
        let (r2, _) = ws(r2)?;
        r = r2;
        if let Ok((r3, _)) = char::<In, SyntaxError>(',')(r) {
            r = r3;
        } else if !r.fragment().starts_with(']') {
            return Err(Err::Failure(SyntaxError { offset: offset(&r), expected: "`,` or `]`".into() }));
        }
    }
}

fn call_args(i: In) -> PResult<Vec<Arg>> {
    let (mut r, _) = char('(')(i)?;
    let mut args = Vec::new();
    loop {
        let (r2, _) = ws(r)?;
        r = r2;
        if let Ok((r3, _)) = char::<In, SyntaxError>(')')(r) {
            return Ok((r3, args));
        }
        // `name = value` or a positional value.
        let named = (ident, ws, char('='), ws).parse(r).ok().filter(|(rest, _)| !rest.fragment().starts_with('='));
        let (r2, name) = match named {
            Some((rest, (n, _, _, _))) => (rest, Some(n)),
            None => (r, None),
        };
        let (r2, value) = cut_with(expr(r2), &r2, "an argument")?;
        args.push(Arg { name, value });
        let (r2, _) = ws(r2)?;
        r = r2;
        if let Ok((r3, _)) = char::<In, SyntaxError>(',')(r) {
            r = r3;
        } else if !r.fragment().starts_with(')') {
            return Err(Err::Failure(SyntaxError { offset: offset(&r), expected: "`,` or `)`".into() }));
        }
    }
}

fn name_or_call(i: In) -> PResult<Expr> {
    let (r, id) = ident(i)?;
    if r.fragment().starts_with('(') {
        let (r, args) = call_args(r)?;
        let span = Span::new(id.span.start, offset(&r));
        return Ok((r, Expr { kind: ExprKind::Call { name: id, args }, span }));
    }
    let kind = match id.name.as_str() {
        "true" => ExprKind::Bool(true),
        "false" => ExprKind::Bool(false),
        _ => ExprKind::Ident(id.name),
    };
    Ok((r, Expr { kind, span: id.span }))
}

fn paren(i: In) -> PResult<Expr> {
    let (r, _) = char('(')(i)?;
    let (r, _) = ws(r)?;
    let (r, e) = cut_with(expr(r), &r, "an expression")?;
    let (r, _) = ws(r)?;
    match char::<In, SyntaxError>(')')(r) {
        Ok((r, _)) => Ok((r, e)),
        Err(_) => Err(Err::Failure(SyntaxError { offset: offset(&r), expected: "`)`".into() })),
    }
}

fn primary(i: In) -> PResult<Expr> {
    let r = alt((replicate, number, string, list, paren, name_or_call)).parse(i);
    r.map_err(|e| match e {
        Err::Error(mut s) if s.offset == offset(&i) || s.expected.is_empty() => {
            s.offset = offset(&i);
            s.expected = "a value: a number with a unit (`350ms`), a name, a string, a list or a call".into();
            Err::Error(s)
        }
        other => other,
    })
}

fn unary(i: In) -> PResult<Expr> {
    let start = offset(&i);
    if let Ok((r, _)) = char::<In, SyntaxError>('-')(i) {
        let (r, _) = ws(r)?;
        let (r, e) = cut_with(unary(r), &r, "a value after `-`")?;
        return Ok((r, Expr { span: Span::new(start, e.span.end), kind: ExprKind::Neg(Box::new(e)) }));
    }
    primary(i)
}

fn binary_level<'a>(i: In<'a>, ops: &[(char, BinOp)], next: fn(In<'a>) -> PResult<'a, Expr>) -> PResult<'a, Expr> {
    let (mut r, mut lhs) = next(i)?;
    loop {
        let (r2, _) = inline_ws(r)?;
        let Some(&(c, op)) = ops.iter().find(|(c, _)| r2.fragment().starts_with(*c)) else {
            return Ok((r, lhs));
        };
        let (r3, _) = char::<In, SyntaxError>(c)(r2)?;
        let (r3, _) = ws(r3)?;
        let (r3, rhs) = cut_with(next(r3), &r3, &format!("a value after `{c}`"))?;
        let span = lhs.span.to(rhs.span);
        lhs = Expr { kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span };
        r = r3;
    }
}

fn term(i: In) -> PResult<Expr> {
    binary_level(i, &[('*', BinOp::Mul), ('/', BinOp::Div)], unary)
}

/// An expression: `+ - * /` over values, with the usual precedence.
pub(crate) fn expr(i: In) -> PResult<Expr> {
    binary_level(i, &[('+', BinOp::Add), ('-', BinOp::Sub)], term)
}

fn item<'a>(i: In<'a>, errs: &mut Vec<SyntaxError>) -> PResult<'a, Item> {
    let (r, head) = ident(i)?;
    let (r, _) = ws(r)?;
    if head.name == "include" && r.fragment().starts_with('"') {
        let (r, e) = string(r)?;
        let ExprKind::Str(path) = e.kind else { unreachable!("string() makes strings") };
        return Ok((r, Item::Include { path, span: Span::new(head.span.start, e.span.end) }));
    }
    if head.name == "param" && r.fragment().starts_with(is_ident_start) {
        let (r, name) = ident(r)?;
        let (r, _) = ws(r)?;
        let (r, _) = cut_with(char('=')(r), &r, "`=` and a default value")?;
        let (r, _) = inline_ws(r)?;
        let (r, value) = cut_with(expr(r), &r, "a default value such as `1.2` or `24/s`")?;
        return Ok((r, Item::Param { name, value }));
    }
    if let Ok((r2, _)) = char::<In, SyntaxError>('=')(r) {
        // The value starts on the same line, so a missing value never swallows the next key.
        let (r2, _) = inline_ws(r2)?;
        let (r2, value) = cut_with(expr(r2), &r2, "a value on the same line as `=`")?;
        return Ok((r2, Item::Setting { key: head, value }));
    }
    let (r, name) = if r.fragment().starts_with(is_ident_start) {
        let (r, n) = ident(r)?;
        let (r, _) = ws(r)?;
        (r, Some(n))
    } else if r.fragment().starts_with('"') {
        // A quoted name, for names that are not identifiers (`model "llama-3.1-8b" { ... }`).
        let (r, e) = string(r)?;
        let ExprKind::Str(n) = e.kind else { unreachable!("string() makes strings") };
        let (r, _) = ws(r)?;
        (r, Some(Ident { name: n, span: e.span }))
    } else {
        (r, None)
    };
    let (r, _) = cut_with(char('{')(r), &r, if name.is_some() { "`{` to open the block" } else { "`=` or `{`" })?;
    let (r, items) = items(r, true, errs)?;
    let (r, _) = char('}')(r)?;
    let span = Span::new(head.span.start, offset(&r));
    Ok((r, Item::Block(Block { kind: head, name, items, span })))
}

fn skip_line(i: In, from: usize) -> In {
    let skip = from.saturating_sub(offset(&i));
    let (r, _) = i.take_split(skip.min(i.fragment().len()));
    let frag = r.fragment();
    let stop = frag.find(['\n', '}']).unwrap_or(frag.len());
    let stop = if frag[stop..].starts_with('\n') { stop + 1 } else { stop };
    r.take_split(stop).0
}

fn items<'a>(mut i: In<'a>, in_block: bool, errs: &mut Vec<SyntaxError>) -> PResult<'a, Vec<Item>> {
    let mut out = Vec::new();
    loop {
        let (r, _) = ws(i)?;
        i = r;
        let frag = *i.fragment();
        if frag.is_empty() {
            if in_block {
                return Err(Err::Failure(SyntaxError { offset: offset(&i), expected: "`}` to close the block".into() }));
            }
            return Ok((i, out));
        }
        if frag.starts_with('}') {
            if in_block {
                return Ok((i, out));
            }
            errs.push(SyntaxError { offset: offset(&i), expected: "a setting or a block (this `}` closes nothing)".into() });
            i = i.take_split(1).0;
            continue;
        }
        if frag.starts_with(';') {
            i = i.take_split(1).0;
            continue;
        }
        match item(i, errs) {
            Ok((r, it)) => {
                out.push(it);
                i = r;
            }
            Err(Err::Error(mut e)) | Err(Err::Failure(mut e)) => {
                if e.expected.is_empty() {
                    e.expected = "a setting (`key = value`), a `param`, or a block (`kind name { ... }`)".into();
                }
                let at = e.offset;
                errs.push(e);
                let next = skip_line(i, at);
                if offset(&next) == offset(&i) {
                    i = i.take_split(1).0;
                } else {
                    i = next;
                }
            }
            Err(Err::Incomplete(_)) => unreachable!("complete parsers never ask for more input"),
        }
    }
}

/// Brackets and unary minus signs nest at most this deep. The parser, the evaluator and the
/// printer recurse; thousands of levels would overflow the stack, and no scenario needs more
/// than a handful.
pub const MAX_NESTING: usize = 64;

/// The offset of the first bracket (or `-`) nested deeper than [`MAX_NESTING`], if any;
/// strings and comments are skipped.
fn too_deep(src: &str) -> Option<usize> {
    let (mut depth, mut minus) = (0usize, 0usize);
    let mut chars = src.char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            '"' => {
                // Skip the string (escapes included).
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                minus = 0;
            }
            '#' => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                minus = 0;
            }
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                minus = 0;
            }
            '-' => minus += 1,
            c if c.is_whitespace() => {}
            _ => minus = 0,
        }
        if depth + minus > MAX_NESTING {
            return Some(k);
        }
    }
    None
}

/// Whether `e` is the error of a too deeply nested file (which is then not parsed at all).
pub fn is_nesting_error(e: &SyntaxError) -> bool {
    e.expected.contains("nested at most")
}

fn nesting_error(at: usize) -> SyntaxError {
    SyntaxError { offset: at, expected: format!("brackets or `-` signs nested at most {MAX_NESTING} deep") }
}

/// Parses a whole file, returning the items that parsed and every syntax error.
pub fn parse_file(src: &str) -> (Vec<Item>, Vec<SyntaxError>) {
    if let Some(at) = too_deep(src) {
        return (Vec::new(), vec![nesting_error(at)]);
    }
    let mut errs = Vec::new();
    match items(In::new(src), false, &mut errs) {
        Ok((_, items)) => (items, errs),
        Err(Err::Error(e)) | Err(Err::Failure(e)) => {
            errs.push(e);
            (Vec::new(), errs)
        }
        Err(Err::Incomplete(_)) => (Vec::new(), errs),
    }
}

/// Parses one expression (a `--set` value); the whole input must be used.
pub fn parse_expr(src: &str) -> Result<Expr, SyntaxError> {
    if let Some(at) = too_deep(src) {
        return Err(nesting_error(at));
    }
    let i = In::new(src);
    let (i, _) = ws(i).map_err(|_| SyntaxError { offset: 0, expected: "a value".into() })?;
    match expr(i) {
        Ok((r, e)) => {
            let (r, _) = ws(r).map_err(|_| SyntaxError { offset: offset(&r), expected: "the end of the value".into() })?;
            if r.fragment().is_empty() {
                Ok(e)
            } else {
                Err(SyntaxError { offset: offset(&r), expected: "the end of the value (an operator or nothing)".into() })
            }
        }
        Err(Err::Error(e)) | Err(Err::Failure(e)) => Err(e),
        Err(Err::Incomplete(_)) => Err(SyntaxError { offset: src.len(), expected: "a value".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Expr {
        parse_expr(src).unwrap_or_else(|e| panic!("{src}: {e:?}"))
    }

    #[test]
    fn numbers_carry_units_with_or_without_space() {
        assert_eq!(one("350ms").kind, ExprKind::Number { value: 350.0, unit: Some("ms".into()) });
        assert_eq!(one("10000 tok/s").kind, ExprKind::Number { value: 10000.0, unit: Some("tok/s".into()) });
        assert_eq!(one("7 $/h").kind, ExprKind::Number { value: 7.0, unit: Some("$/h".into()) });
        assert_eq!(one("24/s").kind, ExprKind::Number { value: 24.0, unit: Some("/s".into()) });
        assert!(matches!(one("1.2 / 50ms").kind, ExprKind::Binary(BinOp::Div, _, _)));
        assert!(matches!(one("3 x mid").kind, ExprKind::Replicate { count: 3, .. }));
    }

    #[test]
    fn precedence_and_spans() {
        let e = one("1 + 2 * 3");
        let ExprKind::Binary(BinOp::Add, _, rhs) = e.kind else { panic!() };
        assert!(matches!(rhs.kind, ExprKind::Binary(BinOp::Mul, _, _)));
        assert_eq!(rhs.span, Span::new(4, 9));
    }

    #[test]
    fn files_with_blocks_params_and_comments() {
        let src = "# c\nparam rate = 24/s\nname = \"x\"\npool decode { role = decode; instances = [dc_big, 3 x dc_mid] }\nrouter { policy = telemetry }\n";
        let (items, errs) = parse_file(src);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(items.len(), 4);
        let Item::Block(b) = &items[2] else { panic!() };
        assert_eq!(b.kind.name, "pool");
        assert_eq!(b.name.as_ref().unwrap().name, "decode");
        assert_eq!(b.items.len(), 2);
    }

    #[test]
    fn deep_nesting_is_a_located_error_not_a_stack_overflow() {
        let deep = format!("param x = {}1{}\n", "(".repeat(5000), ")".repeat(5000));
        let (_, errs) = parse_file(&deep);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].offset, 10 + MAX_NESTING, "at the first bracket past the limit");
        assert!(errs[0].expected.contains("nested at most 64 deep"));
        assert!(parse_expr(&"-".repeat(5000)).is_err());
        // Brackets in strings and comments do not count; 64 levels parse.
        let ok = format!("# {}\nname = \"{}\"\nparam y = {}2{}\n", "(".repeat(100), "[".repeat(100), "(".repeat(64), ")".repeat(64));
        assert_eq!(parse_file(&ok).1, vec![]);
    }

    #[test]
    fn every_bad_line_is_reported() {
        let src = "a = \nb = 3\nc = )\nd 5\n";
        let (_, errs) = parse_file(src);
        assert_eq!(errs.len(), 3, "{errs:?}");
    }
}
